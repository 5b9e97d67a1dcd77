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
	basis := r.Settings.OpenLoopBasis
	if basis == "" {
		basis = "each server's own warm saturation rate"
	}
	fmt.Fprintf(&b, "\nOpen loop (Poisson arrivals, 64 in flight, at fractions of %s; latency from the intended send time; machine busy and steal: share of both cores' time, from /proc/stat):\n\n", basis)
	fmt.Fprintf(&b, "| fraction | server | target req/s | achieved req/s | p50 µs | p99 µs | p99.9 µs | max µs | server CPU µs/req | machine busy | steal | generator's dispatch lateness p50 / p99 µs |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, o := range r.OpenLoopSummary {
		fmt.Fprintf(&b, "| %g | %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.1f | %.0f%% | %.1f%% | %.0f / %.0f |\n", o.Fraction, o.Server, o.TargetRPS, o.AchievedRPS,
			o.P50us, o.P99us, o.P999us, o.MaxUs, o.CPUUsPerReq, 100*o.MachineBusy, 100*o.Steal, o.DispatchLate.P50us, o.DispatchLate.P99us)
	}
	if len(r.OpenLoopP99) > 0 {
		fmt.Fprintf(&b, "\nOpen-loop p99 and server CPU per request against the floor's at the same offered rate:\n\n")
		fmt.Fprintf(&b, "| fraction | server | floor p99 µs | server p99 µs | p99 ratio | CPU/request ratio |\n|---:|---|---:|---:|---:|---:|\n")
		for _, o := range r.OpenLoopP99 {
			fmt.Fprintf(&b, "| %g | %s | %.0f | %.0f | %.2f | %.2f |\n", o.Fraction, o.Server, o.FloorP99us, o.P99us, o.Ratio, o.CPURatio)
		}
	}
	var def []Summary
	for _, s := range r.Summary {
		if s.Default != nil {
			def = append(def, s)
		}
	}
	if len(def) > 0 {
		fmt.Fprintf(&b, "\nThe shipped default config (decision log to stdout, every allowed decision, include_input) against the floor:\n\n")
		fmt.Fprintf(&b, "| case | workers | floor req/s | default req/s (min–max) | req/s ratio | default p50 / p99 / p99.9 µs | floor CPU µs/req | default CPU µs/req | CPU ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, s := range def {
			d := s.Default
			fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f (%.0f–%.0f) | %.2f | %.0f / %.0f / %.0f | %.1f | %.1f | %.2f |\n", s.Case, s.Concurrency, s.Floor.RPS, d.RPS, d.RPSMin, d.RPSMax,
				s.DefaultRPSRatio, d.P50us, d.P99us, d.P999us, s.Floor.CPUUsPerReq, d.CPUUsPerReq, s.DefaultCPURatio)
		}
	}
	if len(r.Profiles) > 0 {
		fmt.Fprintf(&b, "\nCPU profiles of the in-process authz under load, with the Go runtime's figures for the same stretch (GC; goroutines waiting, runnable, for the core; time blocked on locks):\n\n")
		fmt.Fprintf(&b, "| profile | load | req/s | p50 / p99 µs | CPU µs/req | GC cycles | GC CPU share | GC pause p99 / max µs | sched latency p50 / p99 µs | mutex wait s |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, p := range r.Profiles {
			rt := RuntimeStats{}
			if p.Runtime != nil {
				rt = *p.Runtime
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f / %.0f | %.1f | %.0f | %.1f%% | %.0f / %.0f | %.0f / %.0f | %.3f |\n", p.File, p.Load, p.RPS, p.P50us, p.P99us, p.CPUUsPerReq,
				rt.GCCycles, 100*rt.GCCPUShare, rt.GCPauseP99us, rt.GCPauseMaxUs, rt.SchedLatencyP50us, rt.SchedLatencyP99us, rt.MutexWaitSeconds)
		}
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
	if d := g.DefaultConfig; d != nil {
		fmt.Fprintf(&b, "\nGoals (issue 20, the shipped default config):\n\n| goal | measured | bound | |\n|---|---:|---:|---|\n")
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %s |\n", d.WarmCPURatio.Rule, d.WarmCPURatio.Value, d.WarmCPURatio.Bound, yes(d.WarmCPURatio.Met))
		for _, o := range d.OpenLoopP99 {
			fmt.Fprintf(&b, "| %s | %.2f | %.2f | %s (the floor: %.0f µs) |\n", o.Rule, o.Value, o.Bound, yes(o.Met), o.Floor)
		}
	}
	return b.String()
}
