package main

import (
	"strings"
	"testing"
)

func TestLintCommand(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		exitCode int
		want     string
	}{
		{"demo is clean", []string{"--xds", "../../compose/xds.local.yaml", "--policy", "../../policies", "--idp", "../../compose/idp.yaml"}, 0, "0 error(s), 0 warning(s)"},
		{"fixture has errors", []string{"--xds", "../../internal/lint/testdata/xds.yaml", "--policy", "../../internal/lint/testdata/policy"}, 1, "xds.yaml:28: error: route reports"},
		// The demo IdP's grants: reporting-job holds orders:read; orders-cli's only user holds
		// none of its scopes, so nothing carries orders:write (the same findings as
		// internal/lint's clients file).
		{"idp grants", []string{"--xds", "../../internal/lint/testdata/xds.yaml", "--policy", "../../internal/lint/testdata/policy", "--idp", "testdata/lint-idp.yaml"}, 1,
			"route orders-write requires [orders:write], which no client in testdata/lint-idp.yaml can be granted together"},
		{"clients file", []string{"--xds", "../../internal/lint/testdata/xds.yaml", "--policy", "../../internal/lint/testdata/policy", "--clients", "../../internal/lint/testdata/clients.yaml"}, 1,
			"route billing requires [billing:read], which no client in ../../internal/lint/testdata/clients.yaml can be granted together"},
		{"idp and clients", []string{"--xds", "../../compose/xds.local.yaml", "--idp", "../../compose/idp.yaml", "--clients", "../../internal/lint/testdata/clients.yaml"}, 2, ""},
		{"bad xds file", []string{"--xds", "/nonexistent.yaml"}, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, append([]string{"lint"}, tc.args...)...)
			code := 0
			if err != nil {
				code = exitCode(err)
			}
			if code != tc.exitCode || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d (%v), want %d; output:\n%s", code, err, tc.exitCode, out)
			}
		})
	}
}
