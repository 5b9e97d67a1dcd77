package xds

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// childEnv marks this test binary, re-executed, as the control plane under test.
const childEnv = "SCOPEGATE_XDSBENCH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestSmoke runs the harness end to end on a few streams, the server being this test
// binary re-executed (the same control plane as scopegate xds, in its own process), under
// two names as a comparison runs: every point measured, every change reached
// every stream, and the figures are sane. It keeps the harness from rotting; its numbers
// mean nothing.
func TestSmoke(t *testing.T) {
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skip("needs /proc")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	o := SmokeOptions()
	o.Rounds, o.Streams, o.Changes = 1, []int{2, 4}, 1
	o.Servers = []Server{
		{Name: "a", Cmd: []string{self}, Env: []string{childEnv + "=1"}},
		{Name: "floor", Cmd: []string{self}, Env: []string{childEnv + "=1"}, Floor: true},
	}
	var progress bytes.Buffer
	o.Progress = &progress
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * 2 * 2; len(rep.Points) != want {
		t.Fatalf("%d points, want %d", len(rep.Points), want)
	}
	for i, p := range rep.Points {
		if len(p.Changes) != o.Changes {
			t.Errorf("point %d: %d changes", i, len(p.Changes))
		}
		if p.IdleRSS <= 0 || p.SyncedRSS <= 0 || p.ConnectCPU <= 0 {
			t.Errorf("point %d: %+v", i, p)
		}
		for _, c := range p.Changes {
			if c.CPU <= 0 || c.ToAll <= 0 || c.Peak < c.RSSBefore/2 || c.RSSBefore <= 0 || (c.Allocated <= 0) != (p.Server == "floor") {
				t.Errorf("point %d: change %+v", i, c)
			}
		}
	}
	if len(rep.Summary) != 2*2*2 || len(rep.Fits) != 2*2 {
		t.Errorf("%d summaries, %d fits", len(rep.Summary), len(rep.Fits))
	}
	for _, f := range rep.Fits {
		if f.RSSAt10k <= 0 {
			t.Errorf("fit %+v", f)
		}
	}
	var md bytes.Buffer
	rep.Markdown(&md)
	for _, want := range []string{"| sotw | 2 | a |", "| delta | 4 | floor |", "10,000 streams"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	if !strings.Contains(progress.String(), "round 1 delta") {
		t.Errorf("progress: %s", progress.String())
	}
}

// TestRoundOrder: every other round measures the servers in the reverse order, so drift
// during a run shows as spread rather than as a difference between servers.
func TestRoundOrder(t *testing.T) {
	servers := []Server{{Name: "old"}, {Name: "new"}}
	names := func(r int) string {
		var out []string
		for _, s := range roundOrder(servers, r) {
			out = append(out, s.Name)
		}
		return strings.Join(out, ",")
	}
	if names(0) != "old,new" || names(1) != "new,old" || names(2) != "old,new" {
		t.Errorf("orders %s / %s / %s", names(0), names(1), names(2))
	}
	if servers[0].Name != "old" {
		t.Error("roundOrder reordered its argument")
	}
}

func TestFit(t *testing.T) {
	sums := []Summary{
		{Server: "s", Mode: "sotw", Streams: 100, CPU: 30 * time.Millisecond},
		{Server: "s", Mode: "sotw", Streams: 300, CPU: 70 * time.Millisecond},
	}
	f := fits(sums)
	if len(f) != 1 || f[0].Fixed != 10*time.Millisecond || f[0].PerStream != 200*time.Microsecond {
		t.Fatalf("fit = %+v, want 10ms + 200µs per stream", f)
	}
	if f[0].At10k != 10*time.Millisecond+2*time.Second {
		t.Errorf("at 10k = %v", f[0].At10k)
	}
}
