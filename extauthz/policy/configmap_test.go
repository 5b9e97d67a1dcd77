package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// configMapPolicy reads its required scope from data.json in a subdirectory, so the data
// must be mounted at data.scopegate.conf for the policy (and its test) to work.
var configMapFiles = map[string]string{
	"scopegate/authz.rego": `package scopegate.authz
decision := {"allow": data.scopegate.conf.scope in input.token.scopes, "reason": data.scopegate.conf.reason}
`,
	"scopegate/authz_test.rego": `package scopegate.authz_test
import data.scopegate.authz
test_allow if authz.decision.allow with input as {"token": {"scopes": ["orders:read"]}}
`,
	"scopegate/conf/data.json": `{"scope": "orders:read", "reason": "REASON"}`,
}

// writeConfigMap lays files out the way the kubelet's atomic writer does: a timestamped
// directory, the ..data symlink to it, and top-level symlinks through ..data. A second call
// swaps ..data to a new directory by rename, as an update of the ConfigMap does.
func writeConfigMap(t *testing.T, mount, stamp, reason string) {
	t.Helper()
	ts := filepath.Join(mount, "..2026_11_30_"+stamp)
	for name, body := range configMapFiles {
		p := filepath.Join(ts, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(body, "REASON", reason)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(mount, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(mount, "scopegate")
	if _, err := os.Lstat(top); os.IsNotExist(err) {
		if err := os.Symlink(filepath.Join("..data", "scopegate"), top); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConfigMapMount: a policy mounted from a ConfigMap loads with its data at the right
// path, its files are named by their mounted paths, two pods (different timestamped
// directories, same content) get the same revision, and an update (..data swap) is reloaded.
func TestConfigMapMount(t *testing.T) {
	// Two pods mount the same ConfigMap at the same path; their kubelets pick different
	// timestamped directory names. Pod B's mount is laid out after pod A's is gone.
	mount := t.TempDir()
	writeConfigMap(t, mount, "18_00_00.1", "v1")
	ctx := context.Background()
	a, err := New(ctx, Options{Path: mount, RunTests: true})
	if err != nil {
		t.Fatal(err)
	}
	podB := filepath.Join(t.TempDir(), "policies")
	if err := os.Rename(mount, podB); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mount, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfigMap(t, mount, "18_00_07.9", "v1")
	b, err := New(ctx, Options{Path: mount, RunTests: true})
	if err != nil {
		t.Fatal(err)
	}
	// Pod A's files go back where they were mounted, for the watch below.
	if err := os.RemoveAll(mount); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(podB, mount); err != nil {
		t.Fatal(err)
	}
	if a.Revision().ID != b.Revision().ID {
		t.Errorf("same content, different revisions: %s and %s", a.Revision().ID, b.Revision().ID)
	}
	d, err := a.Eval(ctx, a.Revision(), sampleInput("orders:read"))
	if err != nil || !d.Allow || d.Reason != "v1" {
		t.Fatalf("decision = %+v, %v", d, err)
	}
	bundle, err := Load(mount, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range bundle.Modules {
		if strings.Contains(m.Path, "..") {
			t.Errorf("module named by its timestamped path %s", m.Path)
		}
	}

	watchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan *Revision, 4)
	if err := a.Watch(watchCtx, 20*time.Millisecond, func(r *Revision, err error) {
		if err == nil {
			got <- r
		}
	}); err != nil {
		t.Fatal(err)
	}
	writeConfigMap(t, mount, "18_05_00.2", "v2")
	select {
	case r := <-got:
		d, err := a.Eval(ctx, r, sampleInput("orders:read"))
		if err != nil || d.Reason != "v2" {
			t.Fatalf("after the ConfigMap update: %+v, %v", d, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reload after ..data was swapped")
	}
}
