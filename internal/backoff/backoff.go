// Package backoff retries a start-up step (key set fetch, endpoint discovery) until it works.
package backoff

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Retry calls attempt until it succeeds or ctx ends, waiting first, then twice that, up to
// most between tries; failed is told each error and the wait before the next try. After a
// permanent error (see Permanent) the wait is most at once: retrying soon will not help.
func Retry(ctx context.Context, first, most time.Duration, attempt func() error, failed func(err error, wait time.Duration)) {
	wait := first
	for {
		err := attempt()
		if err == nil || ctx.Err() != nil {
			return
		}
		if Permanent(err) {
			wait = most
		}
		failed(err, wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, most)
	}
}

// Permanent reports whether err (or an error it wraps) says of itself that it is permanent:
// a misconfiguration on one side or the other (an IdP naming another issuer) that no retry
// fixes until someone acts.
func Permanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// Reporter picks the log level of a retried step's failures, so that the log says what is
// wrong without repeating it forever: a passing failure (a refused connection, a timeout) is
// a warning each time; a permanent one is an error when it first appears (or changes) and
// debug while it repeats unchanged. The zero value is ready to use.
type Reporter struct {
	mu   sync.Mutex
	last string
}

// Level is the level to log err at.
func (r *Reporter) Level(err error) slog.Level {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !Permanent(err) {
		r.last = ""
		return slog.LevelWarn
	}
	if msg := err.Error(); msg != r.last {
		r.last = msg
		return slog.LevelError
	}
	return slog.LevelDebug
}
