package idp

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	issued *prometheus.CounterVec
	logins *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "scopegate", Subsystem: "idp", Name: "tokens_issued_total",
			Help: "Access tokens issued, by grant type.",
		}, []string{"grant_type"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "scopegate", Subsystem: "idp", Name: "logins_total",
			Help: "Login attempts on the login page, by result (success, failure).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.issued, m.logins)
	}
	return m
}
