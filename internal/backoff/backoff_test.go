package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRetry(t *testing.T) {
	var waits []time.Duration
	calls := 0
	Retry(context.Background(), time.Millisecond, 3*time.Millisecond, func() error {
		calls++
		if calls < 4 {
			return errors.New("not yet")
		}
		return nil
	}, func(_ error, wait time.Duration) { waits = append(waits, wait) })
	if calls != 4 || len(waits) != 3 || waits[0] != time.Millisecond || waits[1] != 2*time.Millisecond || waits[2] != 3*time.Millisecond {
		t.Fatalf("calls %d, waits %v: want 4 calls and waits 1ms 2ms 3ms (capped)", calls, waits)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	Retry(ctx, time.Hour, time.Hour, func() error { n++; cancel(); return errors.New("x") }, func(error, time.Duration) {
		t.Error("failed called after ctx ended")
	})
	if n != 1 {
		t.Fatalf("%d attempts after ctx ended, want 1", n)
	}
}
