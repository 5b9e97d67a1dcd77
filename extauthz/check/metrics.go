package check

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/extauthz/decisionlog"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/internal/contract"
)

// MaxPolicyReasons bounds the reason label values a policy can add: scopegate's own reasons
// are always their own value; the first MaxPolicyReasons other reasons (a policy's deny
// reasons) are too, and every later one, or one longer than MaxReasonLabelBytes or holding
// other than letters, digits and "_.:-", is counted as OtherReason. A policy that makes
// reasons from request data can't grow the metric without bound.
const (
	MaxPolicyReasons    = 64
	MaxReasonLabelBytes = 64
	OtherReason         = "other"
)

// reasonLabels admits reason label values (see MaxPolicyReasons).
type reasonLabels struct {
	mu     sync.RWMutex
	known  map[string]bool
	policy int // reasons admitted beyond the fixed ones
}

func newReasonLabels() *reasonLabels {
	l := &reasonLabels{known: map[string]bool{"": true, OtherReason: true}}
	for _, r := range contract.Reasons() {
		l.known[r] = true
	}
	for _, c := range policy.ErrorClasses {
		l.known[contract.ReasonPolicyErrorPrefix+c] = true
	}
	return l
}

func (l *reasonLabels) label(reason string) string {
	l.mu.RLock()
	ok := l.known[reason]
	l.mu.RUnlock()
	if ok {
		return reason
	}
	if !labelSafe(reason) {
		return OtherReason
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.known[reason] {
		return reason
	}
	if l.policy >= MaxPolicyReasons {
		return OtherReason
	}
	l.known[reason] = true
	l.policy++
	return reason
}

func labelSafe(s string) bool {
	if len(s) > MaxReasonLabelBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// Metrics counts Checks. Label values are fixed reasons or a bounded set of the policy's own,
// never client data. A nil *Metrics counts nothing.
type Metrics struct {
	reasons      *reasonLabels
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
		reasons: newReasonLabels(),
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
		m.checks.WithLabelValues("shadow_allow", m.reasons.label(r.Reason)).Inc()
		m.allowedDur.Observe(r.Duration.Seconds())
	case r.Allow:
		m.allowed.Inc()
		m.allowedDur.Observe(r.Duration.Seconds())
	default:
		m.checks.WithLabelValues("deny", m.reasons.label(r.Reason)).Inc()
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
		m.shadow.WithLabelValues(m.reasons.label(reason)).Inc()
	}
}
