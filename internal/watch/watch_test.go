package watch

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWatcher(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, dir, file string)
	}{
		{"write in place", func(t *testing.T, _, file string) {
			write(t, file, "v2")
		}},
		{"rename over (editor save)", func(t *testing.T, dir, file string) {
			tmp := filepath.Join(dir, ".xds.yaml.swp")
			write(t, tmp, "v2")
			if err := os.Rename(tmp, file); err != nil {
				t.Fatal(err)
			}
		}},
		{"remove and create", func(t *testing.T, _, file string) {
			if err := os.Remove(file); err != nil {
				t.Fatal(err)
			}
			write(t, file, "v2")
		}},
		{"kubernetes ..data swap", func(t *testing.T, dir, _ string) {
			write(t, filepath.Join(dir, "..data_tmp"), "x")
			if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "xds.yaml")
			write(t, file, "v1")
			w := start(t, file)
			tt.change(t, dir, file)
			waitChange(t, w)
		})
	}
}

func TestWatcherIgnoresOtherFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "xds.yaml")
	write(t, file, "v1")
	w := start(t, file)
	write(t, filepath.Join(dir, "unrelated.txt"), "x")
	// Then a real change: the first signal must be for it, not the unrelated file. The
	// unrelated write happened first, so had it counted, a signal would already be pending.
	select {
	case <-w.Changes():
		t.Fatal("signalled for an unrelated file")
	case <-time.After(3 * DefaultDebounce):
	}
	write(t, file, "v2")
	waitChange(t, w)
}

func TestWatcherSetFollowsNewFiles(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	fa, fb := filepath.Join(a, "a.yaml"), filepath.Join(b, "b.pem")
	write(t, fa, "1")
	write(t, fb, "1")
	w := start(t, fa)
	if err := w.Set([]string{fa, fb}); err != nil {
		t.Fatal(err)
	}
	write(t, fb, "2")
	waitChange(t, w)
}

func start(t *testing.T, files ...string) *Watcher {
	t.Helper()
	w, err := New(slog.New(slog.DiscardHandler), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Set(files); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go w.Run(ctx)
	return w
}

func waitChange(t *testing.T, w *Watcher) {
	t.Helper()
	select {
	case <-w.Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("no change signalled")
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// layout builds and swaps what a watched path names, the way operators and orchestrators do.
type layout struct {
	t    *testing.T
	base string // a directory the test owns
	n    int
}

// version makes a fresh directory holding file with content s, and returns it.
func (l *layout) version(file, s string) string {
	l.t.Helper()
	l.n++
	d := filepath.Join(l.base, "v"+strconvItoa(l.n))
	if err := os.MkdirAll(d, 0o755); err != nil {
		l.t.Fatal(err)
	}
	write(l.t, filepath.Join(d, file), s)
	return d
}

func strconvItoa(n int) string { return fmt.Sprint(n) }

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Each scenario names a path (a directory or a file, possibly through symlinks), swaps what
// it points at three times, and after each swap expects a signal, then a signal for an edit
// inside what the path points at now (the watches moved with the swap), and none for an edit
// in what it pointed at before.
func TestWatcherFollowsSwaps(t *testing.T) {
	tests := []struct {
		name string
		// setup lays out the first version and returns the configured path.
		setup func(l *layout) string
		// swap replaces what the path names with a new version and returns the file to edit
		// in it (an edit there must be seen) and one in the version swapped out (an edit
		// there must not).
		swap func(l *layout, path string) (inNew, inOld string)
	}{
		{
			name: "directory renamed away and another renamed in",
			setup: func(l *layout) string {
				p := filepath.Join(l.base, "pol")
				mustDo(l.t, os.Rename(l.version("p.rego", "1"), p))
				return p
			},
			swap: func(l *layout, p string) (string, string) {
				next := l.version("p.rego", "2")
				old := p + ".old-" + strconvItoa(l.n)
				mustDo(l.t, os.Rename(p, old))
				mustDo(l.t, os.Rename(next, p))
				return filepath.Join(p, "p.rego"), filepath.Join(old, "p.rego")
			},
		},
		{
			name: "git-sync symlink swap (ln -s; mv -T), path without trailing slash",
			setup: func(l *layout) string {
				p := filepath.Join(l.base, "link")
				mustDo(l.t, os.Symlink(filepath.Base(l.version("p.rego", "1")), p))
				return p
			},
			swap: func(l *layout, p string) (string, string) {
				old, _ := filepath.EvalSymlinks(p)
				next := l.version("p.rego", "2")
				tmp := p + ".tmp"
				mustDo(l.t, os.Symlink(filepath.Base(next), tmp))
				mustDo(l.t, os.Rename(tmp, p)) // mv -T link.tmp link
				return filepath.Join(next, "p.rego"), filepath.Join(old, "p.rego")
			},
		},
		{
			name: "ConfigMap ..data swap, directory",
			setup: func(l *layout) string {
				return configMapMount(l, "p.rego")
			},
			swap: func(l *layout, mount string) (string, string) {
				return configMapUpdate(l, mount, "p.rego")
			},
		},
		{
			name: "ConfigMap ..data swap, file",
			setup: func(l *layout) string {
				return filepath.Join(configMapMount(l, "tls.crt"), "tls.crt")
			},
			swap: func(l *layout, p string) (string, string) {
				return configMapUpdate(l, filepath.Dir(p), "tls.crt")
			},
		},
		{
			name: "parent directory of a file renamed away and another renamed in",
			setup: func(l *layout) string {
				conf := filepath.Join(l.base, "conf")
				mustDo(l.t, os.Rename(l.version("xds.yaml", "1"), conf))
				return filepath.Join(conf, "xds.yaml")
			},
			swap: func(l *layout, p string) (string, string) {
				conf := filepath.Dir(p)
				next := l.version("xds.yaml", "2")
				old := conf + ".old-" + strconvItoa(l.n)
				mustDo(l.t, os.Rename(conf, old))
				mustDo(l.t, os.Rename(next, conf))
				return p, filepath.Join(old, "xds.yaml")
			},
		},
		{
			name: "symlinked parent directory of a file swapped",
			setup: func(l *layout) string {
				link := filepath.Join(l.base, "current")
				mustDo(l.t, os.Symlink(l.version("jwks.json", "1"), link)) // absolute target
				return filepath.Join(link, "jwks.json")
			},
			swap: func(l *layout, p string) (string, string) {
				link := filepath.Dir(p)
				old, _ := filepath.EvalSymlinks(link)
				next := l.version("jwks.json", "2")
				tmp := link + ".tmp"
				mustDo(l.t, os.Symlink(next, tmp))
				mustDo(l.t, os.Rename(tmp, link))
				return filepath.Join(next, "jwks.json"), filepath.Join(old, "jwks.json")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &layout{t: t, base: t.TempDir()}
			path := tt.setup(l)
			w := start(t, path)
			for i := 0; i < 3; i++ {
				inNew, inOld := tt.swap(l, path)
				waitChange(t, w)
				write(t, inOld, "stale edit")
				expectQuiet(t, w, "an edit in the version swapped out")
				write(t, inNew, "edit "+strconvItoa(i))
				waitChange(t, w)
			}
		})
	}
}

// configMapSwap writes a new timestamped directory holding file and moves ..data to it, as
// the kubelet's atomic writer does; it returns the new directory.
// configMapMount is a ConfigMap volume holding file, as the kubelet lays it out: file is a
// link to ..data/file, ..data a link to a timestamped folder.
func configMapMount(l *layout, file string) string {
	l.t.Helper()
	mount := filepath.Join(l.base, "mount")
	mustDo(l.t, os.Mkdir(mount, 0o755))
	configMapSwap(l, mount, file)
	mustDo(l.t, os.Symlink("..data/"+file, filepath.Join(mount, file)))
	return mount
}

// configMapUpdate is the kubelet's update of the mount: a new timestamped folder swapped in
// as ..data. It returns the new and the old file's real paths.
func configMapUpdate(l *layout, mount, file string) (string, string) {
	l.t.Helper()
	old, _ := filepath.EvalSymlinks(filepath.Join(mount, "..data"))
	next := configMapSwap(l, mount, file)
	return filepath.Join(next, file), filepath.Join(old, file)
}

func configMapSwap(l *layout, mount, file string) string {
	l.t.Helper()
	l.n++
	ts := filepath.Join(mount, "..2026_11_30_"+strconvItoa(l.n))
	mustDo(l.t, os.Mkdir(ts, 0o755))
	write(l.t, filepath.Join(ts, file), strconvItoa(l.n))
	tmp := filepath.Join(mount, "..data_tmp")
	mustDo(l.t, os.Symlink(filepath.Base(ts), tmp))
	mustDo(l.t, os.Rename(tmp, filepath.Join(mount, "..data")))
	return ts
}

// A path that does not exist yet is followed to where it would be: its arrival is a change,
// and so are edits after it.
func TestWatcherPathAppears(t *testing.T) {
	base := t.TempDir()
	p := filepath.Join(base, "later", "policies")
	w := start(t, p)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	waitChange(t, w)
	l := &layout{t: t, base: base}
	mustDo(t, os.Rename(l.version("p.rego", "1"), p))
	waitChange(t, w)
	write(t, filepath.Join(p, "p.rego"), "2")
	waitChange(t, w)
}

// A tree is watched whole: a subdirectory created later is watched too.
func TestWatcherTreeGrows(t *testing.T) {
	dir := t.TempDir()
	w := start(t, dir)
	sub := filepath.Join(dir, "lib", "deep")
	mustDo(t, os.MkdirAll(sub, 0o755))
	waitChange(t, w)
	write(t, filepath.Join(sub, "x.rego"), "1")
	waitChange(t, w)
}

func TestResolveLoop(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	mustDo(t, os.Symlink("b", a))
	mustDo(t, os.Symlink("a", b))
	if _, err := resolve(a, func(string, string) {}); err == nil || !strings.Contains(err.Error(), "too many levels") {
		t.Fatalf("resolve of a symlink loop = %v", err)
	}
}

// expectQuiet fails if a change is signalled within a few debounce periods.
func expectQuiet(t *testing.T, w *Watcher, what string) {
	t.Helper()
	select {
	case <-w.Changes():
		t.Fatalf("signalled for %s", what)
	case <-time.After(5 * 20 * time.Millisecond):
	}
}
