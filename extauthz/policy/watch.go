package policy

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch reloads the policy when its files change, until ctx ends. Editors and config
// management replace files by rename, and a bundle is often rewritten in several writes, so
// events are coalesced for settle before one reload.
func (e *Engine) Watch(ctx context.Context, settle time.Duration, reloaded func(*Revision, error)) error {
	if e.opts.Path == "" {
		return nil // the built-in policy never changes
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	info, err := os.Stat(e.opts.Path)
	if err != nil {
		w.Close()
		return err
	}
	root, onlyName := e.opts.Path, ""
	if !info.IsDir() {
		root, onlyName = filepath.Dir(e.opts.Path), filepath.Base(e.opts.Path)
	}
	if err := addTree(w, root, onlyName == ""); err != nil {
		w.Close()
		return err
	}
	go func() {
		defer w.Close()
		var timer *time.Timer
		var fire <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if onlyName != "" && filepath.Base(ev.Name) != onlyName {
					continue
				}
				if ev.Has(fsnotify.Create) && onlyName == "" {
					if st, err := os.Stat(ev.Name); err == nil && st.IsDir() {
						_ = addTree(w, ev.Name, true)
					}
				}
				if timer == nil {
					timer = time.NewTimer(settle)
				} else {
					timer.Reset(settle)
				}
				fire = timer.C
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				e.log.Warn("policy watch error", "error", err)
			case <-fire:
				fire = nil
				rev, err := e.Reload(ctx)
				if reloaded != nil {
					reloaded(rev, err)
				}
			}
		}
	}()
	return nil
}

func addTree(w *fsnotify.Watcher, root string, recursive bool) error {
	if !recursive {
		return w.Add(root)
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return w.Add(p)
		}
		return nil
	})
}
