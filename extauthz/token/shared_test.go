package token

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/extauthz/introspect"
	"github.com/scopegate/scopegate/extauthz/sharedstate"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/testing/redistest"
)

// sharedAnswers starts a real redis-server and returns its introspection answers store.
func sharedAnswers(t *testing.T) *sharedstate.Answers {
	t.Helper()
	srv := redistest.Start(t)
	s, err := sharedstate.New(sharedstate.Options{Addresses: []string{srv.Addr()}, AnswerKey: []byte("0123456789abcdef0123456789abcdef"),
		ProbeInterval: 20 * time.Millisecond, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s.Start(context.Background())
	t.Cleanup(s.Close)
	deadline := time.After(20 * time.Second)
	for {
		ch := s.Changed()
		if s.Up() {
			return s.Answers()
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("store not up after 20s: %+v", s.Status())
		}
	}
}

// newReplica is an introspecting Verifier (one authz replica) asking idp, sharing answers
// through answers, with at most maxConcurrent IdP calls at once.
func newReplica(t *testing.T, idp *fakeIdP, answers *sharedstate.Answers, maxConcurrent int) *introRig {
	t.Helper()
	r := &introRig{idp: idp, clock: &clock{t: time.Now()}, reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}}
	r.metrics = introspect.NewMetrics(r.reg)
	r.issuer = introIssuer("corp", idp.srv.URL+"/introspect")
	in := r.issuer.Introspection
	c, err := introspect.New(introspect.Options{Name: "corp", Issuer: introIss, Endpoint: in.Endpoint, ClientID: "scopegate",
		ClientSecret: "s3cret", Timeout: 2 * time.Second, Metrics: r.metrics, MaxConcurrent: maxConcurrent,
		Shared: answers, CacheTTL: in.CacheTTL, NegativeCacheTTL: in.NegativeCacheTTL})
	if err != nil {
		t.Fatal(err)
	}
	r.cache = NewCache(1000)
	r.v = NewVerifier(Options{Issuers: []Issuer{issuerOf(r.issuer, nil, c)}, Cache: r.cache, Now: r.clock.now,
		Logger: slog.New(slog.NewTextHandler(&syncWriter{w: r.logs}, nil))})
	return r
}

// A replica that reads an answer from the store decides as the replica that asked the IdP:
// every member the decision reads survives the store (a token_use or a cnf left out would
// read back as an access token, or an unbound one).
func TestSharedAnswerDecidesAsTheIdPsAnswer(t *testing.T) {
	idp := newFakeIdP(t)
	answers := sharedAnswers(t)
	a, b := newReplica(t, idp, answers, 0), newReplica(t, idp, answers, 0)
	tests := []struct {
		name, extra, reason string
	}{
		{"access token", "", ""},
		{"token_use refresh", `,"token_use":"refresh"`, contract.ReasonWrongTyp},
		{"token_use id", `,"token_use":"id"`, contract.ReasonWrongTyp},
		{"cnf with a method scopegate can't check", `,"cnf":{"jwk":{"kty":"EC"}}`, contract.ReasonMalformed},
		{"cnf jkt and an unknown member", `,"cnf":{"jkt":"abc","x5t":"sha1"}`, contract.ReasonMalformed},
		{"cnf empty", `,"cnf":{}`, contract.ReasonMalformed},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp.always(200, a.active(time.Hour, tt.extra))
			tok := fmt.Sprintf("opaque-shared-%d", i)
			before := idp.calls.Load()
			_, errA := a.v.Verify(context.Background(), tok)
			if got := reasonOf(errA); got != tt.reason {
				t.Fatalf("replica A (asked the IdP): reason %q, want %q", got, tt.reason)
			}
			idB, errB := b.v.Verify(context.Background(), tok)
			if got := reasonOf(errB); got != tt.reason {
				t.Fatalf("replica B (read A's answer from the store): reason %q, want %q", got, tt.reason)
			}
			if n := idp.calls.Load() - before; n != 1 {
				t.Fatalf("%d IdP calls for one token on two replicas; want 1 (B reads the store)", n)
			}
			if tt.reason == "" && (idB.Subject != "svc-1" || idB.ScopeString != "orders:read orders:write" || idB.Source != SourceIntrospection) {
				t.Errorf("B's identity: %+v", idB)
			}
		})
	}
}

// An answer another replica shared is read without an IdP call, so it needs none of the
// issuer's call slots: with every slot held by a slow call, a token whose answer is in the
// store is still accepted (and a new token still gets 503 introspection_overloaded at once).
func TestSharedAnswerNeedsNoCallSlot(t *testing.T) {
	idp := newFakeIdP(t)
	answers := sharedAnswers(t)
	a, b := newReplica(t, idp, answers, 0), newReplica(t, idp, answers, 1)
	idp.always(200, a.active(time.Hour, ""))
	if _, err := a.v.Verify(context.Background(), "known-token"); err != nil {
		t.Fatalf("replica A: %v", err)
	}
	gate, arrived := make(chan struct{}), make(chan struct{}, 1)
	idp.mu.Lock()
	idp.gate, idp.arrived = gate, arrived
	idp.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(gate)
	wg.Go(func() { _, _ = b.v.Verify(context.Background(), "slow-token") }) // holds B's only slot
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow call never reached the IdP")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if id, err := b.v.Verify(ctx, "known-token"); err != nil || id.Subject != "svc-1" {
		t.Fatalf("replica B, every call slot busy, answer in the store: %v; want accepted from the store", err)
	}
	if _, err := b.v.Verify(ctx, "new-token"); reasonOf(err) != contract.ReasonIntrospectionOverloaded {
		t.Fatalf("replica B, every call slot busy, new token: %v; want introspection_overloaded", err)
	}
}

// Concurrent first Checks of one token on two replicas: each Check reads the store on its own
// goroutine, finds nothing, and joins its replica's call; B's call waits for A's claim. One
// IdP call, one identity per replica.
func TestSharedConcurrentFirstChecks(t *testing.T) {
	idp := newFakeIdP(t)
	answers := sharedAnswers(t)
	a, b := newReplica(t, idp, answers, 0), newReplica(t, idp, answers, 0)
	idp.always(200, a.active(time.Hour, ""))
	gate, arrived := make(chan struct{}), make(chan struct{}, 4)
	idp.mu.Lock()
	idp.gate, idp.arrived = gate, arrived
	idp.mu.Unlock()
	const n = 8
	ids := make([]*Identity, 2*n)
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { ids[i], errs[i] = a.v.Verify(context.Background(), opaque) })
	}
	select {
	case <-arrived: // A's call holds the claim
	case <-time.After(10 * time.Second):
		t.Fatal("no call reached the IdP")
	}
	for i := n; i < 2*n; i++ {
		wg.Go(func() { ids[i], errs[i] = b.v.Verify(context.Background(), opaque) })
	}
	// Each Check counts its miss after joining its replica's call: release the IdP only then.
	deadline := time.Now().Add(10 * time.Second)
	for (a.counter("cache", "miss") < n || b.counter("cache", "miss") < n) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	for i := range 2 * n {
		if errs[i] != nil {
			t.Fatalf("Check %d: %v", i, errs[i])
		}
		if first := ids[i/n*n]; ids[i] != first {
			t.Fatalf("Check %d: identity %p, want its replica's shared identity %p", i, ids[i], first)
		}
	}
	if c := idp.calls.Load(); c != 1 {
		t.Fatalf("%d IdP calls for %d concurrent first Checks on two replicas; want 1", c, 2*n)
	}
}
