// Package backoff retries a start-up step (key set fetch, endpoint discovery) until it works.
package backoff

import (
	"context"
	"time"
)

// Retry calls attempt until it succeeds or ctx ends, waiting first, then twice that, up to
// most between tries; failed is told each error and the wait before the next try.
func Retry(ctx context.Context, first, most time.Duration, attempt func() error, failed func(err error, wait time.Duration)) {
	wait := first
	for {
		err := attempt()
		if err == nil || ctx.Err() != nil {
			return
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
