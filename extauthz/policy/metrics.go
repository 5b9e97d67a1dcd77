package policy

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts policy reloads and the revision in force. A nil *Metrics counts nothing.
type Metrics struct {
	reloads  *prometheus.CounterVec
	revision *prometheus.GaugeVec
}

// NewMetrics registers the policy metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopegate_policy_loads_total", Help: "Policy compilations, by result (ok, rejected).",
		}, []string{"result"}),
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scopegate_policy_revision_info", Help: "The policy revision in force (value 1).",
		}, []string{"revision"}),
	}
	reg.MustRegister(m.reloads, m.revision)
	return m
}

func (m *Metrics) loaded(rev *Revision, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.reloads.WithLabelValues("rejected").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.revision.Reset()
	m.revision.WithLabelValues(rev.ID).Set(1)
}
