package sharedstate

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// op is a kind of store call (a metric label).
type op int

const (
	opReplay op = iota // SET NX PX of a DPoP proof
	opAnswerGet
	opAnswerPut
	opClaim
	opPing
	opCount
)

var opNames = [opCount]string{"replay", "answer_get", "answer_put", "claim", "ping"}

type metrics struct {
	calls, errors [opCount]prometheus.Counter
	latency       [opCount]prometheus.Observer
	up            prometheus.Gauge
	// fallbackReplay counts DPoP proofs decided by a replica's local cache (store down,
	// on_unavailable: local); fallbackIntrospection, introspections that skipped the store.
	fallbackReplay, fallbackIntrospection prometheus.Counter
	first, replayed                       prometheus.Counter
	hit, miss, shared                     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scopegate_shared_state_calls_total",
		Help: "Commands sent to the shared state store (Redis/Valkey), by operation."}, []string{"op"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scopegate_shared_state_errors_total",
		Help: "Shared state store commands that failed (connection, timeout, error reply), by operation."}, []string{"op"})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "scopegate_shared_state_duration_seconds",
		Help:    "Latency of shared state store commands, by operation.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25}}, []string{"op"})
	up := prometheus.NewGauge(prometheus.GaugeOpts{Name: "scopegate_shared_state_up",
		Help: "1 while the shared state store answers, 0 while it is down or not connected yet."})
	fallback := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scopegate_shared_state_fallback_total",
		Help: "Decisions made without the shared state store because it was unavailable: dpop_replay (the replica's own replay cache, on_unavailable: local) or introspection (the IdP asked directly)."}, []string{"use"})
	replay := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scopegate_shared_state_dpop_proofs_total",
		Help: "DPoP proofs recorded in the shared store: first (first use, accepted) or replayed (already used on some replica)."}, []string{"result"})
	answers := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scopegate_shared_state_introspection_total",
		Help: "Shared introspection answers: hit (another replica's answer used), miss, shared (an answer this replica got from the IdP stored)."}, []string{"result"})
	if reg != nil {
		reg.MustRegister(calls, errs, lat, up, fallback, replay, answers)
	}
	m := &metrics{up: up, fallbackReplay: fallback.WithLabelValues("dpop_replay"), fallbackIntrospection: fallback.WithLabelValues("introspection"),
		first: replay.WithLabelValues("first"), replayed: replay.WithLabelValues("replayed"),
		hit: answers.WithLabelValues("hit"), miss: answers.WithLabelValues("miss"), shared: answers.WithLabelValues("shared")}
	for i, name := range opNames {
		m.calls[i], m.errors[i], m.latency[i] = calls.WithLabelValues(name), errs.WithLabelValues(name), lat.WithLabelValues(name)
	}
	return m
}

// observe counts one command; err is a failure (a nil reply is not one: callers pass nil).
func (m *metrics) observe(o op, d time.Duration, err error) {
	m.calls[o].Inc()
	m.latency[o].Observe(d.Seconds())
	if err != nil {
		m.errors[o].Inc()
	}
}
