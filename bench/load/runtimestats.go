package load

import (
	"encoding/json"
	"math"
	"os"
	"runtime/metrics"
)

// RuntimeStats are what the Go runtime says about a profiled stretch of load: where a tail
// can come from besides the work itself (garbage collection, goroutines waiting to run,
// contended locks).
type RuntimeStats struct {
	GCCycles float64 `json:"gc_cycles"`
	// GCCPUShare is the GC's share of the process's CPU time (assist, background, idle marking).
	GCCPUShare float64 `json:"gc_cpu_share"`
	// GCPause* are the stop-the-world pauses.
	GCPauses     float64 `json:"gc_pauses"`
	GCPauseP99us float64 `json:"gc_pause_p99_us"`
	GCPauseMaxUs float64 `json:"gc_pause_max_us"`
	// SchedLatency* are how long goroutines waited, runnable, for a thread: queueing for the
	// one core (stream workers, the decision log's writer, the GC's workers).
	SchedLatencyP50us float64 `json:"sched_latency_p50_us"`
	SchedLatencyP99us float64 `json:"sched_latency_p99_us"`
	// MutexWaitSeconds is the time goroutines spent blocked on sync.Mutex/RWMutex.
	MutexWaitSeconds float64 `json:"mutex_wait_s"`
}

var runtimeSamples = []string{
	"/gc/cycles/total:gc-cycles", "/cpu/classes/gc/total:cpu-seconds", "/cpu/classes/total:cpu-seconds",
	"/sched/pauses/total/gc:seconds", "/sched/latencies:seconds", "/sync/mutex/wait/total:seconds",
}

func readRuntime() []metrics.Sample {
	s := make([]metrics.Sample, len(runtimeSamples))
	for i, n := range runtimeSamples {
		s[i].Name = n
	}
	metrics.Read(s)
	return s
}

// runtimeSince is the stats between two readings.
func runtimeSince(a, b []metrics.Sample) RuntimeStats {
	f := func(i int) float64 {
		switch b[i].Value.Kind() {
		case metrics.KindFloat64:
			return b[i].Value.Float64() - a[i].Value.Float64()
		case metrics.KindUint64:
			return float64(b[i].Value.Uint64() - a[i].Value.Uint64())
		}
		return 0
	}
	st := RuntimeStats{GCCycles: f(0), MutexWaitSeconds: f(5)}
	if cpu := f(2); cpu > 0 {
		st.GCCPUShare = f(1) / cpu
	}
	pauses := histSince(a[3], b[3])
	st.GCPauses = pauses.total()
	st.GCPauseP99us, st.GCPauseMaxUs = 1e6*pauses.quantile(0.99), 1e6*pauses.quantile(1)
	sched := histSince(a[4], b[4])
	st.SchedLatencyP50us, st.SchedLatencyP99us = 1e6*sched.quantile(0.5), 1e6*sched.quantile(0.99)
	return st
}

type histDelta struct {
	counts  []uint64
	buckets []float64
}

func histSince(a, b metrics.Sample) histDelta {
	if a.Value.Kind() != metrics.KindFloat64Histogram || b.Value.Kind() != metrics.KindFloat64Histogram {
		return histDelta{}
	}
	ha, hb := a.Value.Float64Histogram(), b.Value.Float64Histogram()
	d := histDelta{counts: make([]uint64, len(hb.Counts)), buckets: hb.Buckets}
	for i := range hb.Counts {
		d.counts[i] = hb.Counts[i]
		if i < len(ha.Counts) {
			d.counts[i] -= ha.Counts[i]
		}
	}
	return d
}

func (h histDelta) total() float64 {
	var n uint64
	for _, c := range h.counts {
		n += c
	}
	return float64(n)
}

// quantile is the upper bound of the bucket holding the q-quantile (the bucket's lower bound
// when it is unbounded above).
func (h histDelta) quantile(q float64) float64 {
	n := h.total()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * n))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank && c > 0 {
			if hi := h.buckets[i+1]; !math.IsInf(hi, 1) {
				return hi
			}
			return h.buckets[i]
		}
	}
	return 0
}

func writeRuntimeStats(path string, st RuntimeStats) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return os.WriteFile(path, raw, 0o644)
}
