// Package watch reports changes to a set of files, the way editors and orchestrators actually
// change them: written in place, replaced by rename (vim, sed -i, atomic writers), or swapped
// through a symlinked directory (Kubernetes ConfigMaps and Secrets, whose "..data" link moves).
//
// It watches each file's directory, not the file: a watch on the file itself dies with the
// inode an editor renames over it.
package watch

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce coalesces the burst of events one save produces into one change.
const DefaultDebounce = 100 * time.Millisecond

// Watcher signals on C after files it follows change.
type Watcher struct {
	log      *slog.Logger
	fs       *fsnotify.Watcher
	debounce time.Duration
	changes  chan struct{}

	mu    sync.Mutex
	files map[string]bool // absolute, cleaned paths
	dirs  map[string]bool
}

// New starts a watcher; call Set to choose the files and Run to process events.
func New(log *slog.Logger, debounce time.Duration) (*Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	return &Watcher{
		log: log, fs: fw, debounce: debounce,
		changes: make(chan struct{}, 1),
		files:   map[string]bool{}, dirs: map[string]bool{},
	}, nil
}

// Changes receives one value after each burst of changes (never blocks the watcher: a change
// already pending absorbs the next).
func (w *Watcher) Changes() <-chan struct{} { return w.changes }

// Set replaces the followed files. Directories no longer needed are unwatched.
func (w *Watcher) Set(files []string) error {
	want := map[string]bool{}
	dirs := map[string]bool{}
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return fmt.Errorf("watch %s: %w", f, err)
		}
		want[abs] = true
		dirs[filepath.Dir(abs)] = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for d := range dirs {
		if w.dirs[d] {
			continue
		}
		if err := w.fs.Add(d); err != nil {
			return fmt.Errorf("watch directory %s: %w", d, err)
		}
	}
	for d := range w.dirs {
		if !dirs[d] {
			_ = w.fs.Remove(d)
		}
	}
	w.files, w.dirs = want, dirs
	return nil
}

// Run processes events until ctx ends, then closes the watcher.
func (w *Watcher) Run(ctx context.Context) {
	defer w.fs.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			if w.relevant(ev) {
				w.log.Debug("watched file changed", "file", ev.Name, "op", ev.Op.String())
				timer.Reset(w.debounce)
			}
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			w.log.Error("file watcher error", "error", err)
		case <-timer.C:
			select {
			case w.changes <- struct{}{}:
			default:
			}
		}
	}
}

// relevant: an event on a followed file, or on a Kubernetes-style "..something" entry in a
// followed file's directory (the atomic swap of a mounted ConfigMap or Secret). Pure
// permission changes are ignored.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Clean(ev.Name)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.files[name] {
		return true
	}
	return strings.HasPrefix(filepath.Base(name), "..") && w.dirs[filepath.Dir(name)]
}
