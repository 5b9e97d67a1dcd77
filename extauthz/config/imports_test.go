package config

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/scopegate/scopegate/"

// wiring lists the packages that may turn a Config into the runtime packages' Options: the
// binary, the authz server's assembly, the one-process demo and the load bench. Every other
// package takes its own Options and must not depend on this one, even indirectly.
var wiring = []string{"cmd/", "bench/", "extauthz/server", "demo/devstack"}

// runtimePackages are named by issue 21 as having imported the config: they must exist (so
// that a rename can't make this test pass by missing them) and stay free of it.
var runtimePackages = []string{"extauthz/token", "extauthz/check", "extauthz/policy", "extauthz/policy/remote"}

func TestOnlyWiringDependsOnConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over the module")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the module's imports: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-f", `{{.ImportPath}} {{join .Deps " "}}`, module+"...").Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	self := module + "extauthz/config"
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg := strings.TrimPrefix(fields[0], module)
		seen[pkg] = true
		if fields[0] == self || isWiring(pkg) {
			continue
		}
		for _, dep := range fields[1:] {
			if dep == self {
				t.Errorf("%s depends on extauthz/config: take its own Options, filled by the wiring (extauthz/server, cmd/scopegate)", pkg)
			}
		}
	}
	for _, pkg := range runtimePackages {
		if !seen[pkg] {
			t.Errorf("package %s not found by go list: update runtimePackages", pkg)
		}
	}
}

func isWiring(pkg string) bool {
	for _, w := range wiring {
		if pkg == strings.TrimSuffix(w, "/") || strings.HasSuffix(w, "/") && strings.HasPrefix(pkg, w) || strings.HasPrefix(pkg, w+"/") {
			return true
		}
	}
	return false
}
