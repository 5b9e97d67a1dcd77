package load

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// childEnv marks this test binary, re-executed, as a server under test (floor or authz).
const childEnv = "SCOPEGATE_LOADBENCH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestHist(t *testing.T) {
	var h Hist
	for i := 1; i <= 100000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {0.999, 99900 * time.Microsecond}, {1, 100 * time.Millisecond}} {
		got := h.Quantile(c.q)
		if d := float64(got-c.want) / float64(c.want); d < -0.01 || d > 0.01 {
			t.Errorf("q%v = %v, want %v ±1%%", c.q, got, c.want)
		}
	}
	var small Hist
	small.Record(3)
	small.Record(200)
	if small.Quantile(0.5) != 3 || small.Quantile(1) != 200 {
		t.Errorf("small values: %v %v", small.Quantile(0.5), small.Quantile(1))
	}
	for v := int64(0); v < 1<<30; v = v*3/2 + 1 {
		if hv := histValue(histIndex(v)); hv < v || float64(hv-v) > float64(v)/128+1 {
			t.Fatalf("bucket of %d tops at %d", v, hv)
		}
	}
}

func TestProcCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := ProcCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	m0, err := readMachineCPU()
	if err != nil || m0.total <= 0 || m0.idle > m0.total {
		t.Fatalf("/proc/stat: %+v, %v", m0, err)
	}
}

// A pinned server process stays on its CPU, threads started after the pinning included.
func TestPinProcess(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.NumCPU() < 2 {
		t.Skip("needs Linux and two CPUs")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The floor is a Go server: it starts threads as load arrives, after the pinning.
	ch, err := startChild(context.Background(), func(addr, _ string) ([]string, []string) {
		return []string{self, "floor", "--listen", addr}, []string{childEnv + "=1"}
	}, nil, filepath.Join(t.TempDir(), "floor.log"), 45*time.Second, serverCPU)
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) {
		t.Skipf("this sandbox does not let a process choose its CPUs: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer ch.stop(10 * time.Second)
	cl, err := dial(ch.addr, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.close()
	closedLoop(context.Background(), cl, 8, []*authv3.CheckRequest{{}}, 2000, time.Minute)
	for _, cpu := range []int{serverCPU, harnessCPU} {
		on, err := onCPU(ch.pid(), cpu)
		if err != nil || on != (cpu == serverCPU) {
			t.Fatalf("server on CPU %d only: %v (%v)", cpu, on, err)
		}
	}
}

// A pinned harness runs on one CPU with one P from the start of the run (not once the
// runtime notices its new CPU mask), and gets its CPUs and Ps back afterwards.
func TestPinHarness(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.NumCPU() < 2 {
		t.Skip("needs Linux and two CPUs")
	}
	procs := runtime.GOMAXPROCS(0)
	undo, err := pinHarness(harnessCPU)
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) {
		t.Skipf("this sandbox does not let a process choose its CPUs: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	pinnedProcs := runtime.GOMAXPROCS(0)
	on, onErr := onCPU(os.Getpid(), harnessCPU)
	undo()
	if pinnedProcs != 1 {
		t.Errorf("pinned: GOMAXPROCS %d, want 1", pinnedProcs)
	}
	if !on || onErr != nil {
		t.Errorf("pinned: not on CPU %d only (%v)", harnessCPU, onErr)
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("after undo: GOMAXPROCS %d, want %d", got, procs)
	}
	if on, _ := onCPU(os.Getpid(), harnessCPU); on {
		t.Errorf("after undo: still on CPU %d only", harnessCPU)
	}
}

func TestMachineCPUSince(t *testing.T) {
	m0 := machineCPU{total: 1000, idle: 600, steal: 10}
	busy, steal := machineCPU{total: 1200, idle: 650, steal: 30}.since(m0)
	if busy != 0.75 || steal != 0.1 {
		t.Fatalf("busy %v steal %v, want 0.75 0.1", busy, steal)
	}
	if busy, steal := m0.since(m0); busy != 0 || steal != 0 {
		t.Fatalf("no time passed: busy %v steal %v", busy, steal)
	}
}

// TestSmoke runs the harness in -smoke mode: the floor and the authz server are this test
// binary re-executed as separate processes (the in-process authz variant, server.New on the
// same config, stands in for the scopegate binary so the test needs no go build), and checks
// that the report has every case with requests and sane fields. It keeps the harness from
// rotting; it measures nothing worth reading (the race detector is on).
func TestSmoke(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("the harness reads server CPU from /proc")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	o := SmokeOptions()
	o.Floor, o.Authz, o.AuthzProfile = Launchers(self, []string{childEnv + "=1"}, "")
	o.OutDir = t.TempDir()
	o.Command = "go test -run TestSmoke ./bench/load"
	var progress bytes.Buffer
	o.Progress = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	t.Log("\n" + progress.String())

	// Every case of every server, requests, and the answers scopegate must give.
	want := 0
	for _, s := range Servers {
		want += len(serverCases(s)) * len(o.Concurrency)
	}
	if len(rep.Points) != want {
		t.Fatalf("%d points, want %d", len(rep.Points), want)
	}
	for _, p := range rep.Points {
		name := p.Server + "/" + p.Case
		if p.Requests == 0 || p.RPS <= 0 || p.Seconds <= 0 || p.P50us <= 0 || p.P99us < p.P50us || p.P999us < p.P99us || p.MaxUs < p.P999us {
			t.Errorf("%s: insane point %+v", name, p)
		}
		if p.Errors != 0 || p.ServerCPUSeconds < 0 {
			t.Errorf("%s: %d errors, CPU %v", name, p.Errors, p.ServerCPUSeconds)
		}
		switch {
		case p.Server == ServerFloor && p.OK != p.Requests:
			t.Errorf("%s: floor denied %d", name, p.Denied)
		case p.Server != ServerFloor && p.Case == CaseDeny && p.Denied != p.Requests:
			t.Errorf("%s: allowed %d of the deny-heavy tokens", name, p.OK)
		case p.Server != ServerFloor && p.Case != CaseDeny && p.OK != p.Requests:
			t.Errorf("%s: denied %d valid tokens", name, p.Denied)
		}
		if strings.HasPrefix(p.Case, "cold") && p.Requests > int64(o.ColdES256) {
			t.Errorf("%s: %d requests from a pool of never-seen tokens", name, p.Requests)
		}
	}
	if len(rep.Summary) != len(Cases)*len(o.Concurrency) {
		t.Errorf("%d summary rows", len(rep.Summary))
	}
	for _, s := range rep.Summary {
		if s.RPSRatio <= 0 || s.Floor.Requests == 0 || s.Scopegate.Requests == 0 {
			t.Errorf("summary %s/%d: %+v", s.Case, s.Concurrency, s)
		}
		if (s.Default != nil) != slices.Contains(serverCases(ServerDefault), s.Case) || (s.Default != nil && (s.DefaultCPURatio <= 0 || s.Default.Requests == 0)) {
			t.Errorf("summary %s/%d: default config %+v", s.Case, s.Concurrency, s.Default)
		}
	}
	if len(rep.OpenLoop) != len(Servers)*len(o.OpenLoopFractions) || len(rep.OpenLoopSummary) != len(rep.OpenLoop) {
		t.Fatalf("%d open-loop runs, %d summarised", len(rep.OpenLoop), len(rep.OpenLoopSummary))
	}
	for _, ol := range rep.OpenLoop {
		if ol.Requests == 0 || ol.TargetRPS <= 0 || ol.Errors != 0 || ol.P99us <= 0 {
			t.Errorf("open loop %s: %+v", ol.Server, ol)
		}
		// The machine was busy (a server and the generator ran), never more than all of it.
		if ol.MachineBusy <= 0 || ol.MachineBusy > 1 || ol.Steal < 0 || ol.Steal > ol.MachineBusy {
			t.Errorf("open loop %s: machine busy %v steal %v", ol.Server, ol.MachineBusy, ol.Steal)
		}
		// The generator's own lateness is on record, and is part of the latency it measured.
		if ol.DispatchLate.MaxUs <= 0 || ol.DispatchLate.P50us > ol.P99us {
			t.Errorf("open loop %s: dispatch lateness %+v", ol.Server, ol.DispatchLate)
		}
	}
	// Rates rise with the fraction, and every server is offered the same rates (fractions of
	// the floor's saturation); the goal is read at 0.5, with the floor's p99 beside it.
	n := len(Servers)
	for i := n; i < len(rep.OpenLoopSummary); i++ {
		if a, b := rep.OpenLoopSummary[i-n], rep.OpenLoopSummary[i]; a.Server != b.Server || a.TargetRPS >= b.TargetRPS {
			t.Errorf("open-loop summary out of order: %+v then %+v", a, b)
		}
	}
	for _, ol := range rep.OpenLoop {
		for _, f := range rep.OpenLoop {
			if f.Server == ServerFloor && f.Round == ol.Round && f.Fraction == ol.Fraction && f.TargetRPS != ol.TargetRPS {
				t.Errorf("open loop round %d at %g: %s offered %.0f req/s, the floor %.0f", ol.Round, ol.Fraction, ol.Server, ol.TargetRPS, f.TargetRPS)
			}
		}
	}
	if len(rep.OpenLoopP99) != (n-1)*len(o.OpenLoopFractions) {
		t.Errorf("open-loop p99 comparison: %+v", rep.OpenLoopP99)
	}
	for _, r := range rep.OpenLoopP99 {
		if r.Ratio <= 0 || r.CPURatio <= 0 {
			t.Errorf("open-loop comparison at %g for %s: p99 ratio %v, CPU/request ratio %v", r.Fraction, r.Server, r.Ratio, r.CPURatio)
		}
	}
	if d := rep.Goals.DefaultConfig; d == nil || d.WarmCPURatio.Value <= 0 || len(d.OpenLoopP99) != len(o.OpenLoopFractions) {
		t.Errorf("issue 20 goals: %+v", d)
	}
	if g := rep.Goals.OpenLoopP99us; g.Value <= 0 || g.Floor <= 0 || strings.Contains(g.Rule, "not run") {
		t.Errorf("open-loop goal: %+v", g)
	}
	for _, alg := range []string{"RS256", "ES256"} {
		if v := rep.BareVerify[alg]; v.N == 0 || v.CPUUsPerOp <= 0 {
			t.Errorf("bare verify %s: %+v", alg, v)
		}
		if g := rep.Goals.Cold[alg]; g.Bound <= 0 || g.Value <= 0 {
			t.Errorf("cold goal %s: %+v", alg, g)
		}
	}
	if len(rep.Profiles) != 4 {
		t.Errorf("%d profiles, want warm and cold (closed loop), and both configs under the open loop", len(rep.Profiles))
	}
	for _, p := range rep.Profiles {
		if p.Bytes == 0 || p.Requests == 0 || p.Runtime == nil || p.Runtime.SchedLatencyP99us <= 0 || p.Load == "" {
			t.Errorf("profile: %+v", p)
		}
	}
	if rep.Machine.NProc == 0 || rep.Machine.GoVersion == "" {
		t.Errorf("machine: %+v", rep.Machine)
	}

	// The files: JSON that reads back, an SVG that is well-formed XML.
	raw, err := os.ReadFile(o.OutDir + "/load.json")
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(raw, &back); err != nil || len(back.Points) != len(rep.Points) {
		t.Fatalf("load.json: %v", err)
	}
	svg, err := os.ReadFile(o.OutDir + "/load.svg")
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(svg))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("load.svg: %v", err)
		}
	}
	if md := rep.Markdown(); !strings.Contains(md, "cold-ES256") || !strings.Contains(md, "shipped default config") || !strings.Contains(md, "p99 ratio") {
		t.Errorf("markdown table:\n%s", md)
	}
	// render redraws the same chart from load.json alone.
	if err := os.Remove(o.OutDir + "/load.svg"); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := Main([]string{"render", "-in", o.OutDir + "/load.json"}, &out, &errOut); code != 0 {
		t.Fatalf("render: exit %d: %s", code, errOut.String())
	}
	if again, err := os.ReadFile(o.OutDir + "/load.svg"); err != nil || string(again) != string(svg) {
		t.Errorf("render drew another chart from load.json (%v)", err)
	}
	if out.String() != rep.Markdown() {
		t.Errorf("render printed other tables:\n%s", out.String())
	}
}
