package policy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// versionedPolicy decides with reason v so a test can tell which version is in force.
func versionedPolicy(v string) string {
	return fmt.Sprintf("package scopegate.authz\ndecision := {\"allow\": \"orders:read\" in input.token.scopes, \"reason\": %q}\n", v)
}

// policyDir writes a fresh policy directory for version v under base and returns it.
func policyDir(t *testing.T, base, v string) string {
	t.Helper()
	d := filepath.Join(base, "src-"+v)
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	writePolicy(t, d, versionedPolicy(v))
	return d
}

// policy.path naming a symlink to a directory, without a trailing "/", loads the directory
// the link leads to, and names its files by the configured path.
func TestSymlinkPathLoads(t *testing.T) {
	base := t.TempDir()
	link := filepath.Join(base, "policies")
	if err := os.Symlink(filepath.Base(policyDir(t, base, "v1")), link); err != nil {
		t.Fatal(err)
	}
	e, err := New(context.Background(), Options{Path: link})
	if err != nil {
		t.Fatalf("policy.path naming a symlink: %v", err)
	}
	d, err := e.Eval(context.Background(), e.Revision(), sampleInput("orders:read"))
	if err != nil || d.Reason != "v1" {
		t.Fatalf("decision = %+v, %v", d, err)
	}
	b, err := Load(link, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.Modules[0].Path, filepath.Join(link, "p.rego"); got != want {
		t.Errorf("module named %s, want %s (the configured path)", got, want)
	}
}

// With policy.watch, the policy is reloaded after each way operators replace a policy
// directory as a whole: renamed away and another renamed in, a git-sync symlink swap
// (mv -T), a ConfigMap update (..data swap). Each is done three times; every version loads.
func TestWatchFollowsDirectorySwaps(t *testing.T) {
	tests := []struct {
		name string
		// setup lays out v1 under base and returns policy.path.
		setup func(t *testing.T, base string) string
		// swap puts version v in place.
		swap func(t *testing.T, base, path, v string)
	}{
		{
			name: "mv pol pol.old; mv pol.new pol",
			setup: func(t *testing.T, base string) string {
				p := filepath.Join(base, "pol")
				must(t, os.Rename(policyDir(t, base, "v1"), p))
				return p
			},
			swap: func(t *testing.T, base, p, v string) {
				next := policyDir(t, base, v)
				must(t, os.Rename(p, p+".old-"+v))
				must(t, os.Rename(next, p))
			},
		},
		{
			name: "git-sync: ln -s v2 link.tmp; mv -T link.tmp link",
			setup: func(t *testing.T, base string) string {
				p := filepath.Join(base, "link")
				must(t, os.Symlink(filepath.Base(policyDir(t, base, "v1")), p))
				return p
			},
			swap: func(t *testing.T, base, p, v string) {
				next := policyDir(t, base, v)
				must(t, os.Symlink(filepath.Base(next), p+".tmp"))
				must(t, os.Rename(p+".tmp", p))
			},
		},
		{
			name: "ConfigMap ..data swap",
			setup: func(t *testing.T, base string) string {
				mount := filepath.Join(base, "mount")
				writeConfigMap(t, mount, "v1", "v1")
				return mount
			},
			swap: func(t *testing.T, base, mount, v string) {
				old, err := filepath.EvalSymlinks(filepath.Join(mount, "..data"))
				must(t, err)
				writeConfigMap(t, mount, v, v)
				must(t, os.RemoveAll(old)) // the kubelet removes the old version
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			path := tt.setup(t, base)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			e, err := New(ctx, Options{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			got := make(chan *Revision, 8)
			if err := e.Watch(ctx, 20*time.Millisecond, func(r *Revision, err error) {
				if err == nil {
					got <- r
				}
			}); err != nil {
				t.Fatal(err)
			}
			for _, v := range []string{"v2", "v3", "v4"} {
				tt.swap(t, base, path, v)
				waitReason(t, e, got, v)
			}
		})
	}
}

// waitReason waits for a reload that puts the version deciding with reason v in force.
func waitReason(t *testing.T, e *Engine, got <-chan *Revision, v string) {
	t.Helper()
	guard := time.After(10 * time.Second)
	for {
		select {
		case r := <-got:
			d, err := e.Eval(context.Background(), r, sampleInput("orders:read"))
			if err == nil && d.Reason == v {
				return
			}
		case <-guard:
			d, _ := e.Eval(context.Background(), e.Revision(), sampleInput("orders:read"))
			t.Fatalf("%s never loaded; in force: reason %q", v, d.Reason)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
