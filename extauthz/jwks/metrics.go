package jwks

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts key-set activity per issuer. A nil *Metrics counts nothing.
type Metrics struct {
	refreshes   *prometheus.CounterVec
	failures    *prometheus.CounterVec
	unknownKIDs *prometheus.CounterVec
	kidMisses   *prometheus.CounterVec
	keyCount    *prometheus.GaugeVec
	fetchedAt   *prometheus.GaugeVec
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
			Name: "scopegate_jwks_unknown_kid_refreshes_total", Help: "Key-set fetches made because tokens named an unknown kid (at most one per unknown_kid_interval), per issuer.",
		}, []string{"issuer"}),
		kidMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopegate_jwks_unknown_kid_lookups_total", Help: "Tokens whose kid was not in the key set (each asks for a refresh; most share one or are held back by unknown_kid_interval), per issuer.",
		}, []string{"issuer"}),
		keyCount: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scopegate_jwks_keys", Help: "Usable keys in the key set in force, per issuer.",
		}, []string{"issuer"}),
		fetchedAt: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scopegate_jwks_last_success_timestamp_seconds", Help: "When the key set in force was fetched (or the jwks_file read), Unix time, per issuer.",
		}, []string{"issuer"}),
	}
	reg.MustRegister(m.refreshes, m.failures, m.unknownKIDs, m.kidMisses, m.keyCount, m.fetchedAt)
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

func (m *Metrics) unknownKIDLookup(issuer string) {
	if m != nil {
		m.kidMisses.WithLabelValues(issuer).Inc()
	}
}

func (m *Metrics) keys(issuer string, n int, at time.Time) {
	if m != nil {
		m.keyCount.WithLabelValues(issuer).Set(float64(n))
		m.fetchedAt.WithLabelValues(issuer).Set(float64(at.UnixNano()) / 1e9)
	}
}
