package load

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/scopegate/scopegate/bench/hostinfo"
)

// Report is bench/results/load.json.
type Report struct {
	Generated  string                `json:"generated"`
	Command    string                `json:"command"`
	Machine    hostinfo.Machine      `json:"machine"`
	Settings   Settings              `json:"settings"`
	BareVerify map[string]BareVerify `json:"bare_verify"`
	// Summary pools the rounds: req/s is the mean of the rounds (min and max show drift),
	// latencies come from the merged histograms, CPU per request is total CPU / total requests.
	Summary         []Summary       `json:"summary"`
	OpenLoopSummary []OpenLoopStats `json:"open_loop_summary"`
	// OpenLoopP99 compares each server's open-loop p99 with the floor's (same rates when the
	// floor's saturation is the basis).
	OpenLoopP99 []OpenLoopRatio `json:"open_loop_p99_vs_floor,omitempty"`
	Goals       Goals           `json:"goals"`
	Profiles    []Profile       `json:"profiles,omitempty"`
	// Points and OpenLoop are every measurement, per round, in run order.
	Points   []Point         `json:"points"`
	OpenLoop []OpenLoopPoint `json:"open_loop"`
}

// Settings are the run's options.
type Settings struct {
	Smoke             bool    `json:"smoke"`
	DurationS         float64 `json:"duration_s_per_point"`
	OpenLoopDurationS float64 `json:"open_loop_duration_s"`
	// OpenLoopFractions of each server's warm saturation rate are the open-loop arrival rates.
	OpenLoopFractions []float64 `json:"open_loop_fractions"`
	Concurrency       []int     `json:"concurrency"`
	Rounds            int       `json:"rounds"`
	Conns             int       `json:"grpc_connections"`
	WarmTokens        int       `json:"warm_tokens"`
	DenyTokens        int       `json:"deny_tokens"`
	ColdRS256PerPoint int       `json:"cold_rs256_tokens_per_point"`
	ColdES256PerPoint int       `json:"cold_es256_tokens_per_point"`
	GOMAXPROCS        int       `json:"harness_gomaxprocs"`
	// Pinned: the harness ran on CPU 0 and each server on CPU 1 (GOMAXPROCS=1).
	Pinned bool `json:"pinned,omitempty"`
	// Servers are the servers under test, in run order within a round.
	Servers []string `json:"servers"`
	// OpenLoopBasis says what the open-loop fractions are fractions of.
	OpenLoopBasis string `json:"open_loop_basis"`
}

// BareVerify is jwt.GetSigningMethod(alg).Verify alone.
type BareVerify struct {
	Alg         string  `json:"alg"`
	N           int     `json:"n"`
	CPUUsPerOp  float64 `json:"cpu_us_per_op"`
	WallUsPerOp float64 `json:"wall_us_per_op"`
}

// Lat is latency quantiles in microseconds.
type Lat struct {
	P50us  float64 `json:"p50_us"`
	P99us  float64 `json:"p99_us"`
	P999us float64 `json:"p999_us"`
	MaxUs  float64 `json:"max_us"`
}

func latencies(h *Hist) Lat {
	return Lat{P50us: us(h.Quantile(0.5)), P99us: us(h.Quantile(0.99)), P999us: us(h.Quantile(0.999)), MaxUs: us(h.Max())}
}

// Point is one closed-loop measurement.
type Point struct {
	Round       int     `json:"round"`
	Server      string  `json:"server"`
	Case        string  `json:"case"`
	Concurrency int     `json:"concurrency"`
	Requests    int64   `json:"requests"`
	OK          int64   `json:"ok"`
	Denied      int64   `json:"denied"`
	Errors      int64   `json:"errors"`
	Seconds     float64 `json:"seconds"`
	RPS         float64 `json:"rps"`
	Lat
	ServerCPUSeconds float64 `json:"server_cpu_s"`
	CPUUsPerReq      float64 `json:"server_cpu_us_per_req"`
	ClientCPUSeconds float64 `json:"harness_cpu_s"`
}

// OpenLoopPoint is one open-loop run (latency from the intended send time).
type OpenLoopPoint struct {
	Round       int     `json:"round"`
	Server      string  `json:"server"`
	Fraction    float64 `json:"fraction"`
	TargetRPS   float64 `json:"target_rps"`
	AchievedRPS float64 `json:"achieved_rps"`
	Requests    int64   `json:"requests"`
	OK          int64   `json:"ok"`
	Denied      int64   `json:"denied"`
	Errors      int64   `json:"errors"`
	Lat
	CPUUsPerReq        float64 `json:"server_cpu_us_per_req"`
	HarnessCPUUsPerReq float64 `json:"harness_cpu_us_per_req"`
	// MachineBusy and Steal are fractions of the whole machine's CPU time during the run
	// (/proc/stat): busy counts everything (server, generator, kernel, anything else), steal
	// is time the hypervisor ran something else on our cores.
	MachineBusy float64 `json:"machine_busy"`
	Steal       float64 `json:"steal"`
	// DispatchLate is how late the generator handed requests to its workers: part of every
	// latency above, and the generator's, not the server's.
	DispatchLate Lat `json:"dispatch_late"`
}

// Stats pools one server's rounds of one case and concurrency.
type Stats struct {
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	RPS         float64 `json:"rps"`
	RPSMin      float64 `json:"rps_min"`
	RPSMax      float64 `json:"rps_max"`
	CPUUsPerReq float64 `json:"server_cpu_us_per_req"`
	Lat
}

// Summary compares scopegate with the floor for one case and concurrency; Default (when the
// shipped default config ran this case) too.
type Summary struct {
	Case            string  `json:"case"`
	Concurrency     int     `json:"concurrency"`
	Floor           Stats   `json:"floor"`
	Scopegate       Stats   `json:"scopegate"`
	RPSRatio        float64 `json:"rps_ratio"`
	CPURatio        float64 `json:"cpu_per_req_ratio"`
	Default         *Stats  `json:"default_config,omitempty"`
	DefaultRPSRatio float64 `json:"default_config_rps_ratio,omitempty"`
	DefaultCPURatio float64 `json:"default_config_cpu_per_req_ratio,omitempty"`
}

// OpenLoopRatio is one server's open-loop p99 against the floor's at the same offered rate.
type OpenLoopRatio struct {
	Fraction   float64 `json:"fraction"`
	Server     string  `json:"server"`
	FloorP99us float64 `json:"floor_p99_us"`
	P99us      float64 `json:"p99_us"`
	Ratio      float64 `json:"p99_ratio"`
	// CPURatio is the server's CPU per request ÷ the floor's at the same offered rate: per
	// Check, the same work. (The warm CPU ratio compares the two at saturation, where the
	// faster server batches more requests per system call.)
	CPURatio float64 `json:"cpu_per_req_ratio"`
}

// OpenLoopStats pools a server's open-loop rounds at one fraction.
type OpenLoopStats struct {
	Server      string  `json:"server"`
	Fraction    float64 `json:"fraction"`
	TargetRPS   float64 `json:"target_rps_mean"`
	AchievedRPS float64 `json:"achieved_rps_mean"`
	Requests    int64   `json:"requests"`
	Lat
	CPUUsPerReq  float64 `json:"server_cpu_us_per_req"`
	MachineBusy  float64 `json:"machine_busy_mean"`
	Steal        float64 `json:"steal_mean"`
	DispatchLate Lat     `json:"dispatch_late"`
}

// GoalFraction is the open-loop rate, as a fraction of warm saturation, that issue 6's p99
// goal is judged at.
const GoalFraction = 0.5

// openLoopKind names the pooled histograms of an open-loop fraction.
func openLoopKind(frac float64) string { return fmt.Sprintf("open-loop@%g", frac) }

// Goals is the reading against issue 6.
type Goals struct {
	WarmRPSRatio      Goal               `json:"warm_rps_ratio"`
	WarmCPURatio      Goal               `json:"warm_cpu_per_req_ratio"`
	Cold              map[string]Goal    `json:"cold_cpu_per_req_us"`
	OpenLoopP99us     Goal               `json:"open_loop_p99_us"`
	WarmSaturationRPS map[string]float64 `json:"warm_saturation_rps"`
	// DefaultConfig is the reading against issue 20 (the shipped default config), when it ran.
	DefaultConfig *DefaultGoals `json:"default_config,omitempty"`
}

// DefaultGoals are issue 20's goals for the shipped default config.
type DefaultGoals struct {
	WarmCPURatio Goal   `json:"warm_cpu_per_req_ratio"`
	OpenLoopP99  []Goal `json:"open_loop_p99_ratio"`
}

// Goal is a measured value against a bound.
type Goal struct {
	Value float64 `json:"value"`
	Bound float64 `json:"bound"`
	Rule  string  `json:"rule"`
	Met   bool    `json:"met"`
	// Floor is the floor's own value under the same rule, where that says what the machine
	// allows (open-loop p99).
	Floor float64 `json:"floor,omitempty"`
}

// Profile is a CPU profile of the in-process authz variant under one case's load.
type Profile struct {
	Case        string   `json:"case"`
	File        string   `json:"file"`
	Bytes       int64    `json:"bytes"`
	Concurrency int      `json:"concurrency"`
	Requests    int64    `json:"requests"`
	RPS         float64  `json:"rps"`
	CPUUsPerReq float64  `json:"server_cpu_us_per_req"`
	Top         []string `json:"pprof_top,omitempty"`
	// Load is what drove the profiled server; Lat the latencies the generator measured.
	Load string `json:"load"`
	Lat
	// Runtime is the Go runtime's view of the profiled stretch (GC, scheduling, locks).
	Runtime *RuntimeStats `json:"runtime,omitempty"`
}

func machine() hostinfo.Machine {
	m := hostinfo.Here()
	m.OS = runtime.GOOS + "/" + runtime.GOARCH
	m.Note = "server under test and load generator share the machine's cores (and, on a shared host, with other work: see loadavg)"
	if raw, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(raw))
	}
	return m
}

func (r *Report) summarize(hists map[pointKey]*Hist) {
	pool := func(server, c string, conc int) Stats {
		var s Stats
		var cpu float64
		n := 0
		for _, p := range r.Points {
			if p.Server != server || p.Case != c || p.Concurrency != conc {
				continue
			}
			s.Requests += p.Requests
			s.Errors += p.Errors
			cpu += p.ServerCPUSeconds
			s.RPS += p.RPS
			if n == 0 || p.RPS < s.RPSMin {
				s.RPSMin = p.RPS
			}
			s.RPSMax = max(s.RPSMax, p.RPS)
			n++
		}
		if n > 0 {
			s.RPS /= float64(n)
		}
		if s.Requests > 0 {
			s.CPUUsPerReq = cpu * 1e6 / float64(s.Requests)
		}
		if h := hists[pointKey{server, c, conc}]; h != nil {
			s.Lat = latencies(h)
		}
		return s
	}
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	concs := r.Settings.Concurrency
	r.Summary = nil
	servers := r.Settings.Servers
	if len(servers) == 0 {
		servers = []string{ServerFloor, ServerAuthz} // a load.json from before issue 20
	}
	for _, c := range Cases {
		for _, conc := range concs {
			f, s := pool(ServerFloor, c, conc), pool(ServerAuthz, c, conc)
			row := Summary{Case: c, Concurrency: conc, Floor: f, Scopegate: s,
				RPSRatio: ratio(s.RPS, f.RPS), CPURatio: ratio(s.CPUUsPerReq, f.CPUUsPerReq)}
			if d := pool(ServerDefault, c, conc); d.Requests > 0 {
				row.Default, row.DefaultRPSRatio, row.DefaultCPURatio = &d, ratio(d.RPS, f.RPS), ratio(d.CPUUsPerReq, f.CPUUsPerReq)
			}
			r.Summary = append(r.Summary, row)
		}
	}
	r.OpenLoopSummary, r.OpenLoopP99 = nil, nil
	for _, frac := range r.Settings.OpenLoopFractions {
		for _, server := range servers {
			ol := OpenLoopStats{Server: server, Fraction: frac}
			n, cpu := 0, 0.0
			for _, p := range r.OpenLoop {
				if p.Server == server && p.Fraction == frac {
					ol.TargetRPS += p.TargetRPS
					ol.AchievedRPS += p.AchievedRPS
					ol.Requests += p.Requests
					ol.MachineBusy += p.MachineBusy
					ol.Steal += p.Steal
					cpu += p.CPUUsPerReq * float64(p.Requests)
					n++
				}
			}
			if n == 0 {
				continue
			}
			ol.TargetRPS /= float64(n)
			ol.AchievedRPS /= float64(n)
			ol.MachineBusy /= float64(n)
			ol.Steal /= float64(n)
			if ol.Requests > 0 {
				ol.CPUUsPerReq = cpu / float64(ol.Requests)
			}
			if h := hists[pointKey{server, openLoopKind(frac), 0}]; h != nil {
				ol.Lat = latencies(h)
			}
			if h := hists[pointKey{server, openLoopKind(frac) + "-dispatch", 0}]; h != nil {
				ol.DispatchLate = latencies(h)
			}
			r.OpenLoopSummary = append(r.OpenLoopSummary, ol)
		}
	}
	for _, ol := range r.OpenLoopSummary {
		if ol.Server == ServerFloor {
			continue
		}
		for _, f := range r.OpenLoopSummary {
			if f.Server == ServerFloor && f.Fraction == ol.Fraction {
				r.OpenLoopP99 = append(r.OpenLoopP99, OpenLoopRatio{Fraction: ol.Fraction, Server: ol.Server, FloorP99us: f.P99us, P99us: ol.P99us, Ratio: ratio(ol.P99us, f.P99us),
					CPURatio: ratio(ol.CPUUsPerReq, f.CPUUsPerReq)})
			}
		}
	}

	// Goals. Warm throughput: saturation (the best concurrency) of each; warm CPU per request:
	// at the highest concurrency (both servers saturated).
	g := Goals{Cold: map[string]Goal{}, WarmSaturationRPS: map[string]float64{}}
	var top Summary
	for _, s := range r.Summary {
		if s.Case != CaseWarm {
			continue
		}
		g.WarmSaturationRPS[ServerFloor] = max(g.WarmSaturationRPS[ServerFloor], s.Floor.RPS)
		g.WarmSaturationRPS[ServerAuthz] = max(g.WarmSaturationRPS[ServerAuthz], s.Scopegate.RPS)
		if s.Concurrency >= top.Concurrency {
			top = s
		}
	}
	v := ratio(g.WarmSaturationRPS[ServerAuthz], g.WarmSaturationRPS[ServerFloor])
	g.WarmRPSRatio = Goal{Value: v, Bound: 0.8, Rule: "scopegate warm saturation req/s ÷ floor's ≥ 0.8", Met: v >= 0.8}
	g.WarmCPURatio = Goal{Value: top.CPURatio, Bound: 1.5, Met: top.CPURatio > 0 && top.CPURatio <= 1.5,
		Rule: "scopegate warm server CPU/request ÷ floor's (highest concurrency) ≤ 1.5"}
	for _, c := range []struct{ name, alg string }{{CaseColdRS, "RS256"}, {CaseColdES, "ES256"}} {
		var fcpu, scpu float64
		var fn, sn int64
		for _, p := range r.Points {
			if p.Case != c.name {
				continue
			}
			if p.Server == ServerFloor {
				fcpu, fn = fcpu+p.ServerCPUSeconds, fn+p.Requests
			} else {
				scpu, sn = scpu+p.ServerCPUSeconds, sn+p.Requests
			}
		}
		if fn == 0 || sn == 0 {
			continue
		}
		bound := fcpu*1e6/float64(fn) + 1.3*r.BareVerify[c.alg].CPUUsPerOp
		val := scpu * 1e6 / float64(sn)
		g.Cold[c.alg] = Goal{Value: val, Bound: bound, Met: val <= bound,
			Rule: "scopegate cold server CPU µs/request ≤ floor's + 1.3 × bare " + c.alg + " verify (all concurrencies pooled)"}
	}
	g.OpenLoopP99us = Goal{Bound: 1000, Rule: fmt.Sprintf("scopegate open-loop p99 at %g of its warm saturation rate ≤ 1 ms (not run)", GoalFraction)}
	for _, ol := range r.OpenLoopSummary {
		if ol.Fraction != GoalFraction {
			continue
		}
		switch ol.Server {
		case ServerAuthz:
			g.OpenLoopP99us.Value, g.OpenLoopP99us.Met = ol.P99us, ol.Requests > 0 && ol.P99us <= 1000
			g.OpenLoopP99us.Rule = "scopegate open-loop p99 at half its warm saturation rate ≤ 1 ms"
			if strings.Contains(r.Settings.OpenLoopBasis, "floor") {
				g.OpenLoopP99us.Rule = "scopegate open-loop p99 at half the floor's warm saturation rate ≤ 1 ms"
			}
		case ServerFloor:
			g.OpenLoopP99us.Floor = ol.P99us
		}
	}
	var topDefault Summary
	for _, s := range r.Summary {
		if s.Case == CaseWarm && s.Default != nil && s.Concurrency >= topDefault.Concurrency {
			topDefault = s
		}
	}
	if topDefault.Default != nil {
		d := &DefaultGoals{WarmCPURatio: Goal{Value: topDefault.DefaultCPURatio, Bound: 1.2, Met: topDefault.DefaultCPURatio > 0 && topDefault.DefaultCPURatio <= 1.2,
			Rule: "shipped default config: warm server CPU/request ÷ floor's (highest concurrency) ≤ 1.2"}}
		for _, o := range r.OpenLoopP99 {
			if o.Server == ServerDefault {
				d.OpenLoopP99 = append(d.OpenLoopP99, Goal{Value: o.Ratio, Bound: 1.5, Met: o.Ratio > 0 && o.Ratio <= 1.5, Floor: o.FloorP99us,
					Rule: fmt.Sprintf("shipped default config: open-loop p99 ÷ floor's at %g of the floor's saturation ≤ 1.5", o.Fraction)})
			}
		}
		g.DefaultConfig = d
	}
	if r.Settings.Pinned {
		// Issue 6 sets its goals for server and load sharing the cores: a pinned run is
		// reported against them, never counted as meeting them.
		for _, goal := range []*Goal{&g.WarmRPSRatio, &g.WarmCPURatio, &g.OpenLoopP99us} {
			goal.Met, goal.Rule = false, goal.Rule+" (pinned run: not judged)"
		}
		for alg, goal := range g.Cold {
			goal.Met, goal.Rule = false, goal.Rule+" (pinned run: not judged)"
			g.Cold[alg] = goal
		}
	}
	r.Goals = g
}

// Write writes load.json and load.svg into dir.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "load.json"), append(raw, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "load.svg"), []byte(r.SVG()), 0o644)
}

// pprofTop is `go tool pprof -top` of the profile (nil if the go tool isn't there).
func pprofTop(bin, profile string) []string {
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=30", bin, profile).Output()
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n")
}
