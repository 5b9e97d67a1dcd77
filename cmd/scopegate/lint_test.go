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
