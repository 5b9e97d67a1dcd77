package check_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/extauthz/decisionlog"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// processCPU is this process's user+system CPU time (every thread: the decision log's
// writer goroutine and the GC included).
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDecisionLog is what the decision log (every allowed decision, written to a file)
// adds to a warm Check with the default policy, in process CPU: batches of 100 Checks
// alternate between a service that logs and one that does not, over the same cached tokens,
// so both see the same machine; reported as logged-cpu-ns/check, unlogged-cpu-ns/check and
// their difference, added-cpu-ns/check. shipped is the default config (one allowed line in
// ten carries its input), every-input is input_sample_rate 1, no-input include_input false.
func BenchmarkDecisionLog(b *testing.B) {
	rs := testissuer.NewKey("rs", "RS256")
	ctx := context.Background()
	for _, v := range []struct {
		name      string
		inputRate float64 // <0: no input
	}{{"shipped", 0.1}, {"every-input", 1}, {"no-input", -1}} {
		b.Run(v.name, func(b *testing.B) {
			var o check.Options
			r := newRig(b, []*testissuer.Key{rs}, "default-policy", 100000, func(opts *check.Options) { o = *opts })
			f, err := os.Create(filepath.Join(b.TempDir(), "decisions.log"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			o.DecisionLog = decisionlog.New(f, 1, 200*time.Millisecond)
			if v.inputRate >= 0 {
				o.DecisionLog.WithInput().WithInputSampleRate(v.inputRate)
			}
			logged := check.New(o)
			reqs := make([]*authv3.CheckRequest, 1000)
			for i := range reqs {
				reqs[i] = request(r.token(rs, i, "orders:read orders:write"))
				mustAllow(b, must(r.svc.Check(ctx, reqs[i])))
				mustAllow(b, must(logged.Check(ctx, reqs[i])))
			}
			var on, off time.Duration
			n := 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				c0 := processCPU()
				for j := range 100 {
					mustAllow(b, must(logged.Check(ctx, reqs[(n+j)%len(reqs)])))
				}
				c1 := processCPU()
				for j := range 100 {
					mustAllow(b, must(r.svc.Check(ctx, reqs[(n+j)%len(reqs)])))
				}
				on += c1 - c0
				off += processCPU() - c1
				n += 100
			}
			b.StopTimer()
			if err := o.DecisionLog.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(on.Nanoseconds())/float64(n), "logged-cpu-ns/check")
			b.ReportMetric(float64(off.Nanoseconds())/float64(n), "unlogged-cpu-ns/check")
			b.ReportMetric(float64((on-off).Nanoseconds())/float64(n), "added-cpu-ns/check")
		})
	}
}
