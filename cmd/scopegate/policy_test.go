package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
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

func TestCheckCommand(t *testing.T) {
	claims := filepath.Join(t.TempDir(), "claims.json")
	if err := os.WriteFile(claims, []byte(`{"iss":"i","sub":"alice","client_id":"orders-cli","scope":"orders:read","exp":9999999999}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		allow    bool
		exitCode int
	}{
		{"read allowed", []string{"--method", "GET", "--path", "/orders/1", "--route", "orders-read", "--scopes", "orders:read"}, true, 0},
		{"write denied", []string{"--method", "POST", "--path", "/orders", "--route", "orders-write", "--scopes", "orders:write"}, false, 1},
		{"admin from the wrong client", []string{"--path", "/admin/x", "--route", "admin", "--scopes", "admin"}, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, append([]string{"check", "--policy", "../../policies", "--claims", claims}, tt.args...)...)
			code := 0
			var ee *exitError
			if errors.As(err, &ee) {
				code = ee.code
			} else if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if code != tt.exitCode {
				t.Fatalf("exit %d, want %d\n%s", code, tt.exitCode, out)
			}
			var res struct {
				Decision struct{ Allow bool } `json:"decision"`
				Fired    []string             `json:"rules_fired"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out)
			}
			if res.Decision.Allow != tt.allow || len(res.Fired) == 0 {
				t.Fatalf("decision %+v, rules %v", res.Decision, res.Fired)
			}
		})
	}
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
