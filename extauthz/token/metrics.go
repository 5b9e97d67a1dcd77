package token

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts token-cache use. A nil *Metrics counts nothing.
type Metrics struct {
	hits, misses prometheus.Counter
}

// NewMetrics registers the token-cache metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		hits:   prometheus.NewCounter(prometheus.CounterOpts{Name: "scopegate_token_cache_hits_total", Help: "Checks answered from the verified-token cache."}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{Name: "scopegate_token_cache_misses_total", Help: "Checks that had to verify a token signature."}),
	}
	reg.MustRegister(m.hits, m.misses)
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
