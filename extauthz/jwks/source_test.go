package jwks

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// startSource starts a source and waits for its first key set; it stops with the test.
func startSource(t *testing.T, o Options) (*Source, context.Context) {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	changed := s.Changed()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s.Start(ctx)
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("first key set never fetched")
	}
	return s, ctx
}

// When readiness is signalled, an unknown kid can already be refreshed.
func TestReadyMeansRefreshable(t *testing.T) {
	k1 := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k1)
	defer is.Close()
	s, ctx := startSource(t, Options{Name: "t", URL: is.JWKSURL(), RefreshInterval: time.Hour,
		UnknownKIDInterval: time.Millisecond, FetchTimeout: 2 * time.Second, MaxBytes: 1 << 16})
	if !s.live.Load() {
		t.Fatal("key set visible before unknown-kid refreshes were possible")
	}
	k2 := testissuer.NewKey("k2", "EdDSA")
	is.SetKeys(k1, k2)
	if _, err := s.Lookup(ctx, "k2", "EdDSA"); err != nil {
		t.Fatalf("rotated-in kid: %v", err)
	}
}

// A caller waiting on an unknown-kid refresh that the IdP does not answer gets
// ErrRefreshPending DeadlineMargin before its deadline, not at it.
func TestLookupKeepsDeadlineMargin(t *testing.T) {
	k1 := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k1)
	defer is.Close()
	s, ctx := startSource(t, Options{Name: "t", URL: is.JWKSURL(), RefreshInterval: time.Hour,
		UnknownKIDInterval: time.Millisecond, FetchTimeout: 5 * time.Second, MaxBytes: 1 << 16})
	hold := is.HoldNext()
	defer hold.Release()

	cctx, ccancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer ccancel()
	deadline, _ := cctx.Deadline()
	_, err := s.Lookup(cctx, "forged", "ES256")
	if !errors.Is(err, ErrRefreshPending) {
		t.Fatalf("Lookup = %v, want ErrRefreshPending", err)
	}
	<-hold.Arrived // the refresh was asked for, and is still held
	if left := time.Until(deadline); left <= 0 {
		t.Fatalf("Lookup returned %s after the deadline, want about %s before it", -left, DeadlineMargin)
	}
	// A caller whose budget is already spent does not wait at all.
	short, scancel := context.WithTimeout(ctx, DeadlineMargin/2)
	defer scancel()
	if _, err := s.Lookup(short, "forged-2", "ES256"); !errors.Is(err, ErrRefreshPending) {
		t.Fatalf("Lookup with no budget = %v, want ErrRefreshPending", err)
	}
}

// TestFirstAttemptReportsCause: a caller that must not wait (scopegate check --config) learns
// after the first attempt that the IdP is down, with the URL and the cause; once keys arrive
// the error is gone.
func TestFirstAttemptReportsCause(t *testing.T) {
	is := testissuer.New(testissuer.NewKey("k1", "RS256"))
	defer is.Close()
	is.SetMode(testissuer.Down)
	src, err := New(Options{Name: "demo", URL: is.JWKSURL(), FetchTimeout: time.Second, RefreshInterval: time.Hour,
		UnknownKIDInterval: time.Second, RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := src.Changed()
	src.Start(ctx)
	select {
	case <-src.FirstAttempt():
	case <-time.After(10 * time.Second):
		t.Fatal("first attempt never ended")
	}
	if src.Ready() {
		t.Fatal("ready with the IdP down")
	}
	if err := src.Err(); err == nil || !strings.Contains(err.Error(), is.JWKSURL()) {
		t.Fatalf("Err() = %v, want the URL %s and the cause", err, is.JWKSURL())
	}
	is.SetMode(testissuer.Serving)
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("keys never arrived after the IdP came back")
	}
	if err := src.Err(); err != nil {
		t.Fatalf("Err() = %v after keys arrived", err)
	}
}

// TestFirstAttemptSeesTheKeys: whoever the end of a successful first attempt wakes finds the
// keys in force (scopegate check --config reads Ready right after it; with the attempt
// signalled before the keys were stored, it once reported "no keys" with no error).
func TestFirstAttemptSeesTheKeys(t *testing.T) {
	is := testissuer.New(testissuer.NewKey("k1", "RS256"))
	defer is.Close()
	for i := 0; i < 200; i++ {
		src, err := New(Options{Name: "demo", URL: is.JWKSURL(), FetchTimeout: time.Second, RefreshInterval: time.Hour,
			UnknownKIDInterval: time.Second, RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		src.Start(ctx)
		select {
		case <-src.FirstAttempt():
		case <-time.After(10 * time.Second):
			cancel()
			t.Fatal("first attempt never ended")
		}
		ready, err := src.Ready(), src.Err()
		cancel()
		if !ready {
			t.Fatalf("attempt %d: the first attempt ended without keys in force (Err %v)", i, err)
		}
	}
}

// A Check that can't wait for a slow refresh answers in time (ErrRefreshPending), and the
// refresh finishes in the background with its whole fetch_timeout: the next Check finds the
// key without another request to the IdP.
func TestRefreshOutlivesTheCheck(t *testing.T) {
	k1, k2 := testissuer.NewKey("k1", "ES256"), testissuer.NewKey("k2", "ES256")
	is := testissuer.New(k1)
	defer is.Close()
	s, ctx := startSource(t, Options{Name: "t", URL: is.JWKSURL(), RefreshInterval: time.Hour,
		UnknownKIDInterval: time.Hour, FetchTimeout: 10 * time.Second, MaxBytes: 1 << 16})
	is.SetKeys(k1, k2)
	hold := is.HoldNext()
	cctx, ccancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer ccancel()
	changed := s.Changed()
	if _, err := s.Lookup(cctx, "k2", "ES256"); !errors.Is(err, ErrRefreshPending) {
		t.Fatalf("Lookup while the IdP holds the fetch = %v, want ErrRefreshPending", err)
	}
	<-cctx.Done() // the Check is over; its refresh is not
	hold.Release()
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("the refresh did not finish after the Check that asked for it ended")
	}
	requests := is.Requests()
	if _, err := s.Lookup(ctx, "k2", "ES256"); err != nil {
		t.Fatalf("k2 after the background refresh: %v", err)
	}
	if is.Requests() != requests {
		t.Fatal("the key needed another fetch")
	}
}
