// Package watch reports changes to files and directory trees as the user names them, however
// they are changed: written in place, replaced by rename (vim, sed -i, atomic writers), a whole
// directory swapped by rename (mv pol pol.old; mv pol.new pol), a symlink swapped (git-sync's
// ln -s v2 link.tmp; mv -T link.tmp link), or a Kubernetes ConfigMap or Secret volume updated
// (its "..data" link moved to a new timestamped directory).
//
// An inotify watch follows an inode, not a name: after any of those swaps a watch on the old
// directory sees nothing more. So the watcher resolves each configured path itself, component
// by component and symlink by symlink, watches every directory that holds a component of the
// path (the parent of each name it passes through), and after each change resolves the paths
// again and moves its watches to wherever they point now. A path naming a directory is watched
// as a tree (every directory under it); one naming a file, through its directory.
package watch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce coalesces the burst of events one save produces into one change.
const DefaultDebounce = 100 * time.Millisecond

// maxLinks bounds symlink resolution, as the kernel does (ELOOP).
const maxLinks = 40

// Watcher signals on Changes after what it follows changes.
type Watcher struct {
	log      *slog.Logger
	fs       *fsnotify.Watcher
	debounce time.Duration
	changes  chan struct{}

	applyMu sync.Mutex // one apply at a time (Set and Run's re-resolution)

	mu      sync.Mutex
	paths   []string          // absolute, cleaned, as configured
	rules   map[string]*rule  // what matters in each directory of the current plan
	watched map[string]fileID // directories watched, and the directory (inode) each watch is on
}

// rule says which entries of a watched directory matter.
type rule struct {
	names    map[string]bool // components of a followed path (a directory, a symlink, the file)
	all      bool            // every entry: the directory is inside a followed tree
	dotdot   bool            // "..x" entries: the directory holds a followed file (ConfigMap swaps)
	required bool            // a watch that can't be added is an error, not a note
}

// fileID identifies a directory (device and inode), so a watch left on a directory that has
// been renamed away is told from one on the directory the name holds now.
// (reAdd: this platform can't tell, so the watch is always re-added.)
type fileID struct {
	dev, ino uint64
	reAdd    bool
}

// New starts a watcher; call Set to choose the paths and Run to process events.
func New(log *slog.Logger, debounce time.Duration) (*Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{
		log: log, fs: fw, debounce: debounce,
		changes: make(chan struct{}, 1),
		rules:   map[string]*rule{}, watched: map[string]fileID{},
	}, nil
}

// Changes receives one value after each burst of changes (never blocks the watcher: a change
// already pending absorbs the next).
func (w *Watcher) Changes() <-chan struct{} { return w.changes }

// Set replaces the followed paths (files or directories, as configured: relative ones against
// the working directory). A path that does not exist yet is followed to where it would be,
// and seen when it appears. The error names a directory that could not be watched.
func (w *Watcher) Set(paths []string) error {
	abs := make([]string, 0, len(paths))
	for _, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("watch %s: %w", p, err)
		}
		abs = append(abs, a)
	}
	w.mu.Lock()
	w.paths = abs
	w.mu.Unlock()
	return w.apply()
}

// Close releases a watcher that will not Run (Run closes it when its context ends).
func (w *Watcher) Close() error { return w.fs.Close() }

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
				w.log.Debug("watched path changed", "path", ev.Name, "op", ev.Op.String())
				timer.Reset(w.debounce)
			}
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: assume the worst, look again.
				timer.Reset(w.debounce)
			}
			w.log.Error("file watcher error", "error", err)
		case <-timer.C:
			// Move the watches to wherever the paths lead now, then signal: whoever reloads
			// reads what is there after the watches are in place, so nothing falls between.
			if err := w.apply(); err != nil {
				w.log.Warn("watch: a directory could not be watched; a later change there needs a reload by hand", "error", err)
			}
			select {
			case w.changes <- struct{}{}:
			default:
			}
		}
	}
}

// relevant: an event on a component of a followed path, anywhere in a followed tree, or on a
// "..x" entry beside a followed file. Pure permission changes are ignored. A watched
// directory renamed or removed loses its watch, to be re-added by the next apply.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Clean(ev.Name)
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.watched[name]; ok && ev.Has(fsnotify.Remove|fsnotify.Rename) {
		delete(w.watched, name)
	}
	r := w.rules[filepath.Dir(name)]
	if r == nil {
		return false
	}
	base := filepath.Base(name)
	return r.all || r.names[base] || (r.dotdot && strings.HasPrefix(base, ".."))
}

// apply resolves the paths again and moves the watches to match.
func (w *Watcher) apply() error {
	w.applyMu.Lock()
	defer w.applyMu.Unlock()
	w.mu.Lock()
	paths := append([]string(nil), w.paths...)
	w.mu.Unlock()

	rules, ids := plan(paths)

	w.mu.Lock()
	w.rules = rules
	var add []string
	for dir := range rules {
		if id, ok := w.watched[dir]; !ok || id != ids[dir] || id.reAdd {
			add = append(add, dir)
			delete(w.watched, dir)
		}
	}
	var remove []string
	for dir := range w.watched {
		if rules[dir] == nil {
			remove = append(remove, dir)
			delete(w.watched, dir)
		}
	}
	w.mu.Unlock()

	for _, dir := range remove {
		_ = w.fs.Remove(dir) // gone with its directory already, often
	}
	var errs []error
	for _, dir := range add {
		// A watch still registered under this name is on the directory that used to be
		// here: drop it first.
		_ = w.fs.Remove(dir)
		if err := w.fs.Add(dir); err != nil {
			if rules[dir].required {
				errs = append(errs, fmt.Errorf("watch directory %s: %w", dir, err))
			} else {
				w.log.Debug("watch: not watching an ancestor directory; a rename there goes unseen", "dir", dir, "error", err)
			}
			continue
		}
		w.mu.Lock()
		w.watched[dir] = ids[dir]
		w.mu.Unlock()
	}
	return errors.Join(errs...)
}

// plan resolves each path and says which directories to watch for what, with the identity
// of each directory as it is now.
func plan(paths []string) (map[string]*rule, map[string]fileID) {
	rules := map[string]*rule{}
	get := func(dir string) *rule {
		r := rules[dir]
		if r == nil {
			r = &rule{names: map[string]bool{}}
			rules[dir] = r
		}
		return r
	}
	for _, p := range paths {
		var last string
		final, err := resolve(p, func(dir, name string) {
			get(dir).names[name] = true
			last = dir
		})
		if last != "" {
			get(last).required = true
		}
		if err != nil {
			continue // a missing component: its directory is watched, so its arrival is seen
		}
		fi, err := os.Stat(final)
		if err != nil {
			continue
		}
		if !fi.IsDir() {
			get(filepath.Dir(final)).dotdot = true
			continue
		}
		get(final).required = true
		walkTree(final, get)
		// A ConfigMap or Secret volume: its content is what ..data points at (walkTree
		// skips the timestamped directories, current and stale alike).
		if data, err := resolve(filepath.Join(final, "..data"), func(dir, name string) { get(dir).names[name] = true }); err == nil {
			if fi, err := os.Stat(data); err == nil && fi.IsDir() {
				walkTree(data, get)
			}
		}
	}
	ids := make(map[string]fileID, len(rules))
	for dir := range rules {
		if fi, err := os.Stat(dir); err == nil {
			ids[dir] = idOf(fi)
		}
	}
	return rules, ids
}

// walkTree marks every directory under root as followed whole, except the "..x" directories
// directly under it (a ConfigMap volume's timestamped versions: plan follows ..data instead).
func walkTree(root string, get func(string) *rule) {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable or vanished: what can be watched is
		}
		if !d.IsDir() {
			return nil
		}
		if p != root && filepath.Dir(p) == root && strings.HasPrefix(d.Name(), "..") {
			return filepath.SkipDir
		}
		get(p).all = true
		return nil
	})
}

// resolve walks the absolute path component by component from the root, following every
// symlink (relative targets against the link's directory), and calls step for each name it
// looks up, with the real directory it looks it up in. It returns the real path, or an error
// at the first component that does not exist (or a symlink loop).
func resolve(path string, step func(dir, name string)) (string, error) {
	cur := string(filepath.Separator)
	rest := split(path)
	links := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur) // cur is a real directory: lexical ".." is its parent
			continue
		}
		step(cur, name)
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if err != nil {
			return next, err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return next, fmt.Errorf("%s: too many levels of symbolic links", path)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return next, err
		}
		if filepath.IsAbs(target) {
			cur = string(filepath.Separator)
		}
		rest = append(split(target), rest...)
	}
	return cur, nil
}

func split(p string) []string {
	return strings.Split(filepath.ToSlash(p), "/")
}
