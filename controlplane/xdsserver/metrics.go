package xdsserver

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/controlplane/translate"
)

// metrics are the xDS server's Prometheus series. Fleet labels only ever carry configured
// fleet names (a client's node.cluster never becomes a label unless it is configured), and
// type labels a fixed set, so cardinality is bounded by the config.
type metrics struct {
	connected    *prometheus.GaugeVec
	pushes       *prometheus.CounterVec
	acks         *prometheus.CounterVec
	nacks        *prometheus.CounterVec
	unknownFleet prometheus.Counter
	// identityDenied counts streams refused for their client certificate, by a fixed reason.
	identityDenied *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scopegate_xds_connected_nodes",
			Help: "ADS streams open, by fleet (one per connected Envoy).",
		}, []string{"fleet"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopegate_xds_pushes_total",
			Help: "Discovery responses sent, by fleet and resource type.",
		}, []string{"fleet", "type"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopegate_xds_acks_total",
			Help: "Discovery responses acknowledged (ACK), by fleet and resource type.",
		}, []string{"fleet", "type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopegate_xds_nacks_total",
			Help: "Discovery responses rejected by Envoy (NACK), by fleet and resource type.",
		}, []string{"fleet", "type"}),
		unknownFleet: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scopegate_xds_unknown_fleet_total",
			Help: "ADS streams refused because the node's cluster names no configured fleet.",
		}),
		identityDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopegate_xds_identity_denials_total",
			Help: "ADS streams refused with PermissionDenied: the client certificate does not name the node's fleet (fleet_mismatch), or a request switched fleets (fleet_changed).",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.connected, m.pushes, m.acks, m.nacks, m.unknownFleet, m.identityDenied)
	}
	return m
}

// TypeName is the short name of a resource type URL used in labels and /status
// (translate.TypeName: the golden files are named the same).
func TypeName(typeURL string) string { return translate.TypeName(typeURL) }
