package backoff

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

type permanentErr struct{}

func (permanentErr) Error() string   { return "the other side names another issuer" }
func (permanentErr) Permanent() bool { return true }

// A permanent error backs off to the longest wait at once, and is reported at ERROR once,
// then at DEBUG while it repeats; a passing error is a warning each time.
func TestPermanent(t *testing.T) {
	var waits []time.Duration
	calls := 0
	Retry(context.Background(), time.Millisecond, 3*time.Millisecond, func() error {
		calls++
		switch calls {
		case 1:
			return errors.New("refused")
		case 2, 3:
			return fmt.Errorf("discovery: %w", permanentErr{})
		}
		return nil
	}, func(_ error, wait time.Duration) { waits = append(waits, wait) })
	if want := []time.Duration{time.Millisecond, 3 * time.Millisecond, 3 * time.Millisecond}; !slices.Equal(waits, want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}

	var r Reporter
	perm := fmt.Errorf("discovery: %w", permanentErr{})
	for i, tc := range []struct {
		err  error
		want slog.Level
	}{
		{errors.New("refused"), slog.LevelWarn},
		{errors.New("refused"), slog.LevelWarn},
		{perm, slog.LevelError},
		{perm, slog.LevelDebug},
		{perm, slog.LevelDebug},
		{errors.New("refused"), slog.LevelWarn},
		{perm, slog.LevelError}, // back after something else: said again
	} {
		if got := r.Level(tc.err); got != tc.want {
			t.Errorf("step %d (%v): level %v, want %v", i, tc.err, got, tc.want)
		}
	}
}
