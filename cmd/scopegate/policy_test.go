package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestPolicyTestCommand(t *testing.T) {
	if out, err := run(t, "policy", "test", "../../policies"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package p\nx := 1\n"), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "p_test.rego"), []byte("package p_test\nimport data.p\ntest_x if p.x == 2\n"), 0o600)
	out, err := run(t, "policy", "test", dir)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 || !bytes.Contains([]byte(out), []byte("FAIL")) {
		t.Fatalf("a failing test: err %v, output %s", err, out)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, err := run(t, args...)
		if err != nil || !strings.HasPrefix(out, "scopegate ") || strings.TrimSpace(out) == "scopegate" {
			t.Errorf("%v: %q, %v", args, out, err)
		}
	}
}

func TestPolicyImpactCommand(t *testing.T) {
	// One logged decision: denied when it was logged; policies/ allows it (orders:write
	// implies orders:read), so replaying policies/ flips it.
	line := `{"decision_id":"d-1","request_id":"req-1","route":"orders-read","allow":false,"status":403,"reason":"insufficient_scope","missing_scopes":["orders:read"],` +
		`"input":{"request":{"method":"GET","path":"/orders/1","path_segments":["orders","1"],"query":{},"host":"api","scheme":"https","protocol":"HTTP/1.1","headers":{}},` +
		`"route":{"name":"orders-read","scopes":["orders:read"],"mode":""},` +
		`"token":{"issuer":"demo","iss":"i","sub":"alice","client_id":"web","aud":["orders-api"],"scopes":["orders:write"],"exp":9999999999,"iat":0,"jti":"j","claims":{}}}}` + "\n"
	log := filepath.Join(t.TempDir(), "decisions.jsonl")
	if err := os.WriteFile(log, []byte(line+`{"decision_id":"d-2","allow":false,"status":401,"reason":"missing_token"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"policy", "impact", "--policy", "../../policies", "--log", log}
	tests := []struct {
		name     string
		args     []string
		exitCode int
		want     string
	}{
		{"flip against the log", nil, 1, "deny→allow     route orders-read    403 insufficient_scope (missing orders:read) → allow  ×1  e.g. req-1"},
		{"allowed flips", []string{"--allow-flips"}, 0, "1 decision(s) flip"},
		{"same baseline: nothing flips", []string{"--baseline", "../../policies"}, 0, "no decision flips"},
		{"json", []string{"--format", "json", "--allow-flips"}, 0, `"skipped_without_input": 1`},
		{"bad format", []string{"--format", "yaml"}, 2, ""},
		{"bad policy", []string{"--policy", "/nonexistent"}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, append(append([]string(nil), base...), tt.args...)...)
			code := 0
			if err != nil {
				code = exitCode(err)
			}
			if code != tt.exitCode || !bytes.Contains([]byte(out), []byte(tt.want)) {
				t.Fatalf("exit %d (%v), want %d; output:\n%s\nwant it to contain %q", code, err, tt.exitCode, out, tt.want)
			}
			if tt.name == "json" {
				var rep struct{ Flips int }
				if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Flips != 1 {
					t.Fatalf("json report: %v %+v", err, rep)
				}
			}
		})
	}
}
