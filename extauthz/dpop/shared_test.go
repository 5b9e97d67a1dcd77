package dpop

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/scopegate/scopegate/extauthz/sharedstate"
	"github.com/scopegate/scopegate/internal/testing/redistest"

	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/oauth"
)

// With a shared store: the proof's entry lives until the proof's iat + window (plus the
// store's clock skew allowance), not a fixed span; a store that fails refuses the proof 503
// (fail closed) or lets the local cache decide (SharedFallbackLocal).
func TestSharedReplay(t *testing.T) {
	srv := redistest.Start(t)
	store, err := sharedstate.New(sharedstate.Options{Addresses: []string{srv.Addr()}, ClockSkew: time.Second, ProbeInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	store.Start(context.Background())
	t.Cleanup(store.Close)
	for !store.Up() {
		<-store.Changed()
	}
	key := mustKey(t)
	jkt, _ := oauth.Thumbprint(key)
	req := func(p string) Request {
		return Request{Proof: p, Method: "GET", URI: "https://api.example.com/orders", TokenHash: oauth.TokenHash(accessToken), JKT: jkt}
	}
	a := verifier(t, Options{Shared: store})
	b := verifier(t, Options{Shared: store, SharedFallbackLocal: true})
	p := sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.IssuedAt = now.Add(-50 * time.Second) }))
	if err := a.VerifyContext(context.Background(), req(p)); err != nil {
		t.Fatal(err)
	}
	if err := b.VerifyContext(context.Background(), req(p)); err == nil || err.(*denial.Denial).Reason != contract.ReasonDPoPReplayed {
		t.Fatalf("replay on another verifier: %v", err)
	}
	keys := srv.Keys()
	if len(keys) != 1 {
		t.Fatalf("keys %v", keys)
	}
	pttl, _ := srv.Do("PTTL", keys[0])
	ms, _ := strconv.Atoi(pttl)
	if ms < 8000 || ms > 11000 { // 60s window - 50s since iat + 1s skew
		t.Errorf("PTTL %d ms, want about 11000 (the 10s the proof can still be accepted, plus 1s)", ms)
	}

	srv.Kill()
	for i := range 2 {
		p := sign(t, key, "ES256", good())
		err := a.VerifyContext(context.Background(), req(p))
		if e, ok := err.(*denial.Denial); !ok || e.Reason != contract.ReasonReplayStoreUnavailable || e.Kind != denial.Unavailable {
			t.Fatalf("fail closed, proof %d: %v", i, err)
		}
		if err := b.VerifyContext(context.Background(), req(p)); err != nil {
			t.Fatalf("local fallback, proof %d: %v", i, err)
		}
		if err := b.VerifyContext(context.Background(), req(p)); err == nil || err.(*denial.Denial).Reason != contract.ReasonDPoPReplayed {
			t.Fatalf("local fallback, replay of proof %d: %v", i, fmt.Sprint(err))
		}
	}
}
