package jwks

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts key-set activity per issuer. A nil *Metrics counts nothing.
type Metrics struct {
	refreshes   *prometheus.CounterVec
	failures    *prometheus.CounterVec
	unknownKIDs *prometheus.CounterVec
	keyCount    *prometheus.GaugeVec
}

// NewMetrics registers the key-set metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopegate_jwks_refreshes_total", Help: "Key sets fetched and accepted, per issuer.",
		}, []string{"issuer"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopegate_jwks_refresh_failures_total", Help: "Key-set fetches that failed or were refused (the last good set stays), per issuer.",
		}, []string{"issuer"}),
		unknownKIDs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopegate_jwks_unknown_kid_refreshes_total", Help: "Refreshes attempted because a token named an unknown kid, per issuer.",
		}, []string{"issuer"}),
		keyCount: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scopegate_jwks_keys", Help: "Usable keys in the key set in force, per issuer.",
		}, []string{"issuer"}),
	}
	reg.MustRegister(m.refreshes, m.failures, m.unknownKIDs, m.keyCount)
	return m
}

func (m *Metrics) refreshed(issuer string) {
	if m != nil {
		m.refreshes.WithLabelValues(issuer).Inc()
	}
}

func (m *Metrics) failed(issuer string) {
	if m != nil {
		m.failures.WithLabelValues(issuer).Inc()
	}
}

func (m *Metrics) unknownKID(issuer string) {
	if m != nil {
		m.unknownKIDs.WithLabelValues(issuer).Inc()
	}
}

func (m *Metrics) keys(issuer string, n int) {
	if m != nil {
		m.keyCount.WithLabelValues(issuer).Set(float64(n))
	}
}
