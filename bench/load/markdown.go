package load

import (
	"fmt"
	"strings"
)

func yes(b bool) string {
	if b {
		return "met"
	}
	return "NOT met"
}

// Markdown is the summary table and the goals, as docs/benchmarks.md shows them.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| case | workers | floor req/s | scopegate req/s (min–max) | req/s ratio | floor p50 / p99 / p99.9 µs | scopegate p50 / p99 / p99.9 µs | floor CPU µs/req | scopegate CPU µs/req | CPU ratio |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Summary {
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f (%.0f–%.0f) | %.2f | %.0f / %.0f / %.0f | %.0f / %.0f / %.0f | %.1f | %.1f | %.2f |\n",
			s.Case, s.Concurrency, s.Floor.RPS, s.Scopegate.RPS, s.Scopegate.RPSMin, s.Scopegate.RPSMax, s.RPSRatio,
			s.Floor.P50us, s.Floor.P99us, s.Floor.P999us, s.Scopegate.P50us, s.Scopegate.P99us, s.Scopegate.P999us,
			s.Floor.CPUUsPerReq, s.Scopegate.CPUUsPerReq, s.CPURatio)
	}
	fmt.Fprintf(&b, "\nOpen loop (Poisson arrivals at fractions of each server's warm saturation rate; latency from the intended send time; machine busy and steal: share of both cores' time, from /proc/stat):\n\n")
	fmt.Fprintf(&b, "| fraction | server | target req/s | achieved req/s | p50 µs | p99 µs | p99.9 µs | max µs | server CPU µs/req | machine busy | steal | generator's dispatch lateness p50 / p99 µs |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, o := range r.OpenLoopSummary {
		fmt.Fprintf(&b, "| %g | %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.1f | %.0f%% | %.1f%% | %.0f / %.0f |\n", o.Fraction, o.Server, o.TargetRPS, o.AchievedRPS,
			o.P50us, o.P99us, o.P999us, o.MaxUs, o.CPUUsPerReq, 100*o.MachineBusy, 100*o.Steal, o.DispatchLate.P50us, o.DispatchLate.P99us)
	}
	fmt.Fprintf(&b, "\nBare signature verification (jwt.GetSigningMethod(alg).Verify, one thread): ")
	for _, alg := range []string{"RS256", "ES256"} {
		if v, ok := r.BareVerify[alg]; ok {
			fmt.Fprintf(&b, "%s %.1f µs CPU/op; ", alg, v.CPUUsPerOp)
		}
	}
	g := r.Goals
	fmt.Fprintf(&b, "\n\nGoals (issue 6):\n\n| goal | measured | bound | |\n|---|---:|---:|---|\n")
	fmt.Fprintf(&b, "| %s | %.2f | %.2f | %s |\n", g.WarmRPSRatio.Rule, g.WarmRPSRatio.Value, g.WarmRPSRatio.Bound, yes(g.WarmRPSRatio.Met))
	fmt.Fprintf(&b, "| %s | %.2f | %.2f | %s |\n", g.WarmCPURatio.Rule, g.WarmCPURatio.Value, g.WarmCPURatio.Bound, yes(g.WarmCPURatio.Met))
	for _, alg := range []string{"RS256", "ES256"} {
		if c, ok := g.Cold[alg]; ok {
			fmt.Fprintf(&b, "| %s | %.1f | %.1f | %s |\n", c.Rule, c.Value, c.Bound, yes(c.Met))
		}
	}
	fmt.Fprintf(&b, "| %s | %.0f | %.0f | %s (the floor: %.0f) |\n", g.OpenLoopP99us.Rule, g.OpenLoopP99us.Value, g.OpenLoopP99us.Bound, yes(g.OpenLoopP99us.Met), g.OpenLoopP99us.Floor)
	return b.String()
}
