package watch

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
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
