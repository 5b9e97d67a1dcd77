package check

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/extauthz/decisionlog"
)

// Metrics counts Checks. Label values are fixed reasons, never client data. A nil *Metrics
// counts nothing.
type Metrics struct {
	checks       *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	policyErrors *prometheus.CounterVec
	shadow       *prometheus.CounterVec
	decisions    [3]prometheus.Counter // by decisionSource
	allowed      prometheus.Counter
	allowedDur   prometheus.Observer
}

// NewMetrics registers the Check metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopegate_checks_total", Help: "Checks answered, by result (allow, deny, shadow_allow) and reason.",
		}, []string{"result", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "scopegate_check_duration_seconds", Help: "Time to answer a Check, by result.",
			Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 1},
		}, []string{"result"}),
		policyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopegate_policy_errors_total", Help: "Policy evaluations that failed (and so denied), by class.",
		}, []string{"class"}),
		shadow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopegate_shadow_denials_total", Help: "Requests shadow mode allowed that the policy would have denied, by reason.",
		}, []string{"reason"}),
	}
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scopegate_policy_decisions_total",
		Help: "Policy decisions by source: evaluated, or reused from this token's earlier requests (token_cache) or from another token that agrees on everything the policy reads (shared_cache).",
	}, []string{"source"})
	reg.MustRegister(m.checks, m.duration, m.policyErrors, m.shadow, decisions)
	for src, name := range [...]string{evaluated: "evaluated", fromToken: "token_cache", fromShared: "shared_cache"} {
		m.decisions[src] = decisions.WithLabelValues(name)
	}
	m.allowed = m.checks.WithLabelValues("allow", "")
	m.allowedDur = m.duration.WithLabelValues("allow")
	return m
}

func (m *Metrics) observe(r *decisionlog.Record) {
	if m == nil {
		return
	}
	switch {
	case r.Shadow:
		m.checks.WithLabelValues("shadow_allow", r.Reason).Inc()
		m.allowedDur.Observe(r.Duration.Seconds())
	case r.Allow:
		m.allowed.Inc()
		m.allowedDur.Observe(r.Duration.Seconds())
	default:
		m.checks.WithLabelValues("deny", r.Reason).Inc()
		m.duration.WithLabelValues("deny").Observe(r.Duration.Seconds())
	}
}

// decisionSource is where a policy decision came from.
type decisionSource int

const (
	evaluated decisionSource = iota
	fromToken
	fromShared
)

func (m *Metrics) decision(src decisionSource) {
	if m != nil {
		m.decisions[src].Inc()
	}
}

func (m *Metrics) policyError(class string) {
	if m != nil {
		m.policyErrors.WithLabelValues(class).Inc()
	}
}

func (m *Metrics) shadowDenial(reason string) {
	if m != nil {
		m.shadow.WithLabelValues(reason).Inc()
	}
}
