package jwks

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/internal/testing/logtest"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// writeAtomic replaces path by rename, as config management and editors do.
func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// k8sMount lays out dir the way the kubelet mounts a ConfigMap or Secret: name →
// ..data/name, ..data → ..<version>; swap moves ..data to a new version atomically.
type k8sMount struct {
	t    *testing.T
	dir  string
	name string
	n    int
}

func (m *k8sMount) swap(data []byte) {
	m.t.Helper()
	m.n++
	version := filepath.Join(m.dir, "..v"+strings.Repeat("1", m.n))
	must(m.t, os.Mkdir(version, 0o755))
	must(m.t, os.WriteFile(filepath.Join(version, m.name), data, 0o600))
	tmp := filepath.Join(m.dir, "..data_tmp")
	must(m.t, os.Symlink(filepath.Base(version), tmp))
	must(m.t, os.Rename(tmp, filepath.Join(m.dir, "..data")))
	if m.n == 1 {
		must(m.t, os.Symlink(filepath.Join("..data", m.name), filepath.Join(m.dir, m.name)))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A jwks_file that changes on disk is reloaded, however it is changed; a bad one leaves the
// last good key set in force, logged and counted.
func TestFileReload(t *testing.T) {
	k1, k2, k3 := testissuer.NewKey("k1", "ES256"), testissuer.NewKey("k2", "EdDSA"), testissuer.NewKey("k3", "RS256")
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) (path string, write func([]byte))
	}{
		{"written in place", func(t *testing.T, dir string) (string, func([]byte)) {
			path := filepath.Join(dir, "jwks.json")
			return path, func(b []byte) { must(t, os.WriteFile(path, b, 0o600)) }
		}},
		{"replaced by rename", func(t *testing.T, dir string) (string, func([]byte)) {
			path := filepath.Join(dir, "jwks.json")
			return path, func(b []byte) { writeAtomic(t, path, b) }
		}},
		{"kubernetes ..data swap", func(t *testing.T, dir string) (string, func([]byte)) {
			m := &k8sMount{t: t, dir: dir, name: "jwks.json"}
			return filepath.Join(dir, "jwks.json"), m.swap
		}},
		{"directory renamed away and another renamed in", func(t *testing.T, dir string) (string, func([]byte)) {
			keys, n := filepath.Join(dir, "keys"), 0
			return filepath.Join(keys, "jwks.json"), func(b []byte) {
				n++
				next := fmt.Sprintf("%s.new-%d", keys, n)
				must(t, os.Mkdir(next, 0o755))
				must(t, os.WriteFile(filepath.Join(next, "jwks.json"), b, 0o600))
				if n > 1 {
					must(t, os.Rename(keys, fmt.Sprintf("%s.old-%d", keys, n)))
				}
				must(t, os.Rename(next, keys))
			}
		}},
		{"symlinked directory swapped (ln -s; mv -T)", func(t *testing.T, dir string) (string, func([]byte)) {
			link, n := filepath.Join(dir, "current"), 0
			return filepath.Join(link, "jwks.json"), func(b []byte) {
				n++
				version := fmt.Sprintf("v%d", n)
				must(t, os.Mkdir(filepath.Join(dir, version), 0o755))
				must(t, os.WriteFile(filepath.Join(dir, version, "jwks.json"), b, 0o600))
				must(t, os.Symlink(version, link+".tmp"))
				must(t, os.Rename(link+".tmp", link))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, write := tt.setup(t, t.TempDir())
			write(testissuer.JWKS(k1))
			logs := make(logtest.Records, 64)
			m := NewMetrics(prometheus.NewRegistry())
			s, err := New(Options{Name: "t", File: path, Logger: slog.New(logs), Metrics: m})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s.Start(ctx)

			waitKeys := func(want ...string) {
				t.Helper()
				guard := time.After(10 * time.Second)
				for {
					changed := s.Changed()
					if got := strings.Join(s.Current().KIDs(), ","); got == strings.Join(want, ",") {
						return
					}
					select {
					case <-changed:
					case <-guard:
						t.Fatalf("key set %v, want %v", s.Current().KIDs(), want)
					}
				}
			}
			write(testissuer.JWKS(k1, k2))
			waitKeys("k1", "k2")

			for _, bad := range []string{`<html>not a key set</html>`, `{"keys":[]}`} {
				write([]byte(bad))
				rec := logs.Wait(t, "jwks_file reload failed")
				if !strings.Contains(rec, path) {
					t.Errorf("failure does not name the file: %s", rec)
				}
				if got := s.Current().KIDs(); len(got) != 2 {
					t.Fatalf("after a bad file: %v, want the last good k1,k2", got)
				}
			}
			if n := counter(t, m.failures.WithLabelValues("t")); n < 2 {
				t.Errorf("%v failures counted, want 2", n)
			}
			write(testissuer.JWKS(k3))
			waitKeys("k3")
		})
	}
}
