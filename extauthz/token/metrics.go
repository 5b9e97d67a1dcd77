package token

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts token-cache use. A nil *Metrics counts nothing.
type Metrics struct {
	hits, misses prometheus.Counter
	size         prometheus.Gauge
}

// NewMetrics registers the token-cache metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		hits:   prometheus.NewCounter(prometheus.CounterOpts{Name: "scopegate_token_cache_hits_total", Help: "Checks answered from the verified-token cache."}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{Name: "scopegate_token_cache_misses_total", Help: "Checks that had to verify a token signature."}),
		size:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "scopegate_token_cache_entries", Help: "Entries in the verified-token cache."}),
	}
	reg.MustRegister(m.hits, m.misses, m.size)
	return m
}

func (m *Metrics) hit() {
	if m != nil {
		m.hits.Inc()
	}
}

func (m *Metrics) miss() {
	if m != nil {
		m.misses.Inc()
	}
}

func (m *Metrics) cacheSize(n int) {
	if m != nil {
		m.size.Set(float64(n))
	}
}
