package helm

import (
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// checkDrain: the authz config's drain_delay and shutdown_timeout, and the preStop hook
// before them, fit in the pod's terminationGracePeriodSeconds (with 5 s to exit), so the
// kubelet never kills a drain; the same for xds's --drain-delay and --shutdown-timeout.
func checkDrain(t *testing.T, r *rendering, w *wiring) {
	t.Helper()
	var ac struct {
		DrainDelay      string `json:"drain_delay"`
		ShutdownTimeout string `json:"shutdown_timeout"`
	}
	if err := yaml.Unmarshal(w.authzConfig, &ac); err != nil {
		t.Fatal(err)
	}
	drain, err1 := time.ParseDuration(ac.DrainDelay)
	timeout, err2 := time.ParseDuration(ac.ShutdownTimeout)
	if err1 != nil || err2 != nil || drain <= 0 {
		t.Fatalf("authz config: drain_delay %q, shutdown_timeout %q: the chart sets both (drain_delay > 0)", ac.DrainDelay, ac.ShutdownTimeout)
	}
	authz := container(w.authzPod, "authz")
	var preStop time.Duration
	if h := authz.Lifecycle; h != nil && h.PreStop != nil {
		if h.PreStop.Sleep == nil {
			t.Fatalf("authz preStop: %+v, want a sleep action", h.PreStop)
		}
		preStop = time.Duration(h.PreStop.Sleep.Seconds) * time.Second
	}
	grace := w.authzPod.TerminationGracePeriodSeconds
	if grace == nil || time.Duration(*grace)*time.Second < preStop+drain+timeout+5*time.Second {
		t.Errorf("authz pod terminationGracePeriodSeconds %v < preStop %s + drain_delay %s + shutdown_timeout %s + 5s", grace, preStop, drain, timeout)
	}
	xds := r.deployment("xds")
	if xds == nil {
		return
	}
	args := container(&xds.Spec.Template.Spec, "xds").Args
	flag := func(name string) time.Duration {
		for i, a := range args {
			if a == name && i+1 < len(args) {
				d, err := time.ParseDuration(strings.Trim(args[i+1], `"`))
				if err == nil {
					return d
				}
			}
		}
		t.Fatalf("xds args %v: no %s", args, name)
		return 0
	}
	xd, xt := flag("--drain-delay"), flag("--shutdown-timeout")
	if g := xds.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < xd+xt+5*time.Second {
		t.Errorf("xds terminationGracePeriodSeconds %v < --drain-delay %s + --shutdown-timeout %s + 5s", g, xd, xt)
	}
}
