package main

import (
	"bytes"
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
