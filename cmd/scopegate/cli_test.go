package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Every command's help shows a boolean flag as it is typed (--unverified), never pflag's
// --unverified[=true|false], and names no Go-ish placeholder taken from backquotes.
func TestHelpShowsFlagsAsTyped(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		out, err := run(t, append(strings.Fields(c.CommandPath())[1:], "--help")...)
		if err != nil {
			t.Errorf("%s --help: %v", c.CommandPath(), err)
		}
		if strings.Contains(out, "[=true|false]") {
			t.Errorf("%s --help shows [=true|false]:\n%s", c.CommandPath(), out)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
	out, _ := run(t, "check", "--help")
	for _, want := range []string{"\n      --unverified   ", "\n      --scope string   ", "\n  -h, --help   "} {
		if !strings.Contains(out, want) {
			t.Errorf("check --help lacks %q:\n%s", want, out)
		}
	}
}

// authz and xds take the same command-line overrides.
func TestServeCommandsShareFlags(t *testing.T) {
	flags := func(name string) []string {
		var out []string
		for _, c := range newRootCmd().Commands() {
			if c.Name() == name {
				c.Flags().VisitAll(func(f *pflag.Flag) { out = append(out, f.Name) })
			}
		}
		slices.Sort(out)
		return out
	}
	authz, xds := flags("authz"), flags("xds")
	if !slices.Equal(authz, xds) {
		t.Errorf("authz flags %v, xds flags %v: want the same set", authz, xds)
	}
	for _, f := range []string{"config", "listen", "admin", "log-level", "shutdown-timeout", "drain-delay"} {
		if !slices.Contains(authz, f) {
			t.Errorf("authz lacks --%s", f)
		}
	}
}

func TestAuthzOverridesAreValidated(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "authz.yaml")
	if err := os.WriteFile(cfg, []byte("issuers:\n  - {name: a, issuer: https://idp.example, jwks_uri: https://idp.example/keys, audiences: [api]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runCode(t, "authz", "--config", cfg, "--listen", "nonsense")
	if code != 2 || !strings.Contains(stderr, `listen: "nonsense" is not host:port`) {
		t.Errorf("exit %d, %q", code, stderr)
	}
}

// A misspelt flag names the nearest one; --scope is the one spelling of scopes, on check as
// on token, and --scopes its alias.
func TestFlagSpellings(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"check", "--scpe", "a"}, "unknown flag: --scpe; did you mean --scope?"},
		{[]string{"check", "--unverifed"}, "did you mean --unverified?"},
		{[]string{"policy", "impact", "--polcy", "x"}, "did you mean --policy?"},
		{[]string{"token", "login", "--timout", "1s"}, "did you mean --timeout?"},
		{[]string{"check", "--xyzzy"}, "unknown flag: --xyzzy (see scopegate check --help)"},
	}
	for _, tt := range tests {
		_, stderr, code := runCode(t, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, %q; want 2, %q", tt.args, code, stderr, tt.want)
		}
	}
	for _, spelling := range []string{"--scope", "--scopes"} {
		out, _, code := runCode(t, "check", "--claims", "../../examples/claims.json", "--route", "orders-read", spelling, "orders:read orders:write")
		if code != 1 || !strings.Contains(out, `"missing_scopes": [`) && !strings.Contains(out, "orders:write") {
			t.Errorf("check %s: exit %d\n%s", spelling, code, out)
		}
	}
	cmd := newRootCmd()
	cmd.SetArgs([]string{"token", "refresh", "--scopes", "orders:read", "--cache", "/nonexistent/x.json"})
	_ = cmd.Execute() // fails on the cache; the flag itself must parse
	for _, c := range cmd.Commands() {
		if c.Name() == "token" {
			for _, s := range c.Commands() {
				if s.Name() == "refresh" && !s.Flags().Changed("scope") {
					t.Error("token refresh --scopes did not set --scope")
				}
			}
		}
	}
}

// A bare `scopegate check` shows how to use it (exit 2), rather than deciding a request
// nobody described.
func TestBareCheckPrintsUsage(t *testing.T) {
	out, _, code := runCode(t, "check")
	if code != 2 || !strings.Contains(out, "Usage:\n  scopegate check") || strings.Contains(out, `"decision"`) {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

// Claims keep their integers: a NumericDate prints as 1764460800, not 1.7644608e+09, and the
// token report gives the times.
func TestCheckPrintsIntegersAndTimes(t *testing.T) {
	out, _, _ := runCode(t, "check", "--claims", "../../examples/claims.json", "--route", "orders-read", "--scope", "orders:read")
	if strings.Contains(out, "e+09") || !strings.Contains(out, `"exp": 4102444800`) {
		t.Errorf("claims not printed as integers:\n%s", out)
	}
	if !strings.Contains(out, `"expires_at": "2100-01-01T00:00:00Z"`) || !strings.Contains(out, `"issued_at": "2025-11-30T00:00:00Z"`) {
		t.Errorf("no times in the token report:\n%s", out)
	}
}
