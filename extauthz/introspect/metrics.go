package introspect

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the introspection metrics, labelled by the configured issuer name (bounded by
// the config). A nil *Metrics counts nothing.
type Metrics struct {
	calls    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	cache    *prometheus.CounterVec
	failures *prometheus.CounterVec
	rejected *prometheus.CounterVec
}

// NewMetrics registers the introspection metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scopegate_introspection_calls_total",
			Help: "Calls to an issuer's introspection endpoint, by answer (active, inactive, error)."}, []string{"issuer", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "scopegate_introspection_duration_seconds",
			Help: "Latency of introspection calls.", Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"issuer"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scopegate_introspection_cache_total",
			Help: "Introspected-token cache lookups: hit (positive), negative_hit, miss, stale (a positive answer past cache_ttl used because the IdP failed)."}, []string{"issuer", "result"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scopegate_introspection_failures_total",
			Help: "Checks that could not get an introspection answer in time (IdP error, timeout, deadline, max_concurrent)."}, []string{"issuer"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scopegate_introspection_rejected_total",
			Help: "New tokens not sent to the issuer because max_concurrent calls were in flight (answered 503)."}, []string{"issuer"}),
	}
	reg.MustRegister(m.calls, m.latency, m.cache, m.failures, m.rejected)
	return m
}

// IssuerMetrics are one issuer's series, bound once. A nil *IssuerMetrics counts nothing.
type IssuerMetrics struct {
	active, inactive, errored prometheus.Counter
	latency                   prometheus.Observer
	hit, negativeHit, miss    prometheus.Counter
	stale, failed, reject     prometheus.Counter
}

// For binds the series of the issuer called name.
func (m *Metrics) For(name string) *IssuerMetrics {
	if m == nil {
		return nil
	}
	return &IssuerMetrics{
		active: m.calls.WithLabelValues(name, "active"), inactive: m.calls.WithLabelValues(name, "inactive"),
		errored: m.calls.WithLabelValues(name, "error"), latency: m.latency.WithLabelValues(name),
		hit: m.cache.WithLabelValues(name, "hit"), negativeHit: m.cache.WithLabelValues(name, "negative_hit"),
		miss: m.cache.WithLabelValues(name, "miss"), stale: m.cache.WithLabelValues(name, "stale"),
		failed: m.failures.WithLabelValues(name), reject: m.rejected.WithLabelValues(name),
	}
}

func (m *IssuerMetrics) observe(d time.Duration, r *Response, err error) {
	if m == nil {
		return
	}
	m.latency.Observe(d.Seconds())
	switch {
	case err != nil:
		m.errored.Inc()
	case r.Active:
		m.active.Inc()
	default:
		m.inactive.Inc()
	}
}

func (m *IssuerMetrics) failure() {
	if m != nil {
		m.errored.Inc()
	}
}

// Hit counts a positive cache hit.
func (m *IssuerMetrics) Hit() {
	if m != nil {
		m.hit.Inc()
	}
}

// NegativeHit counts a cached inactive (or refused) answer reused.
func (m *IssuerMetrics) NegativeHit() {
	if m != nil {
		m.negativeHit.Inc()
	}
}

// Miss counts a lookup that needed the endpoint.
func (m *IssuerMetrics) Miss() {
	if m != nil {
		m.miss.Inc()
	}
}

// Stale counts a positive answer past its cache_ttl reused because the IdP failed.
func (m *IssuerMetrics) Stale() {
	if m != nil {
		m.stale.Inc()
	}
}

// Failed counts a Check answered 503 for want of an answer.
func (m *IssuerMetrics) Failed() {
	if m != nil {
		m.failed.Inc()
	}
}

func (m *IssuerMetrics) rejected() {
	if m != nil {
		m.reject.Inc()
	}
}
