package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"

	"github.com/scopegate/scopegate/internal/testissuer"
)

func jwksOf(t *testing.T, keys ...*testissuer.Key) []jwkset.JWK {
	t.Helper()
	var m jwkset.JWKSMarshal
	if err := json.Unmarshal(testissuer.JWKS(keys...), &m); err != nil {
		t.Fatal(err)
	}
	var out []jwkset.JWK
	for _, km := range m.Keys {
		k, err := jwkset.NewJWKFromMarshal(km, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k)
	}
	return out
}

// The first key set arrives inside jwkset's constructor, before the unknown-kid refresher
// exists; it must stay invisible until goLive, or a Check in that window could see keys yet
// be unable to refresh for a key rotated in since (a CI flake in TestKeyRotationAndOutage).
func TestFirstSetHeldUntilLive(t *testing.T) {
	s, err := New(Options{Name: "t", URL: "http://unused.invalid/keys"})
	if err != nil {
		t.Fatal(err)
	}
	changed := s.Changed()
	o := &observed{MemoryJWKSet: jwkset.NewMemoryStorage(), src: s}
	if err := o.KeyReplaceAll(context.Background(), jwksOf(t, testissuer.NewKey("k1", "ES256"))); err != nil {
		t.Fatal(err)
	}
	if s.Ready() {
		t.Fatal("first set published before the source went live")
	}
	select {
	case <-changed:
		t.Fatal("Changed fired before the source went live")
	default:
	}
	o.goLive()
	<-changed
	if got := s.Current().KIDs(); len(got) != 1 || got[0] != "k1" {
		t.Fatalf("live kids = %v, want [k1]", got)
	}

	// Once live, a new set is published as it arrives.
	changed = s.Changed()
	if err := o.KeyReplaceAll(context.Background(), jwksOf(t, testissuer.NewKey("k2", "EdDSA"))); err != nil {
		t.Fatal(err)
	}
	<-changed
	if s.Current().Get("k2") == nil {
		t.Fatal("k2 not published after going live")
	}
}

// When readiness is signalled, an unknown kid can already be refreshed.
func TestReadyMeansRefreshable(t *testing.T) {
	k1 := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k1)
	defer is.Close()
	s, err := New(Options{Name: "t", URL: is.JWKSURL(), RefreshInterval: time.Hour,
		UnknownKIDInterval: time.Millisecond, FetchTimeout: 2 * time.Second, MaxBytes: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	changed := s.Changed()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx)
	<-changed
	if s.kf.Load() == nil {
		t.Fatal("key set visible before the unknown-kid refresher was wired")
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
	s, err := New(Options{Name: "t", URL: is.JWKSURL(), RefreshInterval: time.Hour,
		UnknownKIDInterval: time.Millisecond, FetchTimeout: 5 * time.Second, MaxBytes: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	changed := s.Changed()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx)
	<-changed
	hold := is.HoldNext()
	defer hold.Release()

	cctx, ccancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer ccancel()
	deadline, _ := cctx.Deadline()
	_, err = s.Lookup(cctx, "forged", "ES256")
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
