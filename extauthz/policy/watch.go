package policy

import (
	"context"
	"time"

	"github.com/scopegate/scopegate/internal/watch"
)

// Watch reloads the policy when what policy.path names changes, until ctx ends: a file
// edited or replaced, the directory renamed away and another renamed in, a symlink swapped
// (git-sync), a ConfigMap's ..data moved (internal/watch follows all of them). Events are
// coalesced for settle before one reload, since a bundle is often rewritten in several writes.
func (e *Engine) Watch(ctx context.Context, settle time.Duration, reloaded func(*Revision, error)) error {
	if e.opts.Path == "" {
		return nil // the built-in policy never changes
	}
	w, err := watch.New(e.log, settle)
	if err != nil {
		return err
	}
	if err := w.Set([]string{e.opts.Path}); err != nil {
		w.Close()
		return err
	}
	go w.Run(ctx)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.Changes():
				rev, err := e.Reload(ctx)
				if reloaded != nil {
					reloaded(rev, err)
				}
			}
		}
	}()
	return nil
}
