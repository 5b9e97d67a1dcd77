package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/internal/oauth"
	"github.com/scopegate/scopegate/internal/testing/redistest"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// syncBuffer is a log sink several replicas write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// replica is one authz process of a fleet sharing a store.
type replica struct {
	srv    *Server
	client authv3.AuthorizationClient
	admin  string
}

// startReplica starts an authz with the shared_state block (and more config) and waits until
// it serves; logs go to logs. stop shuts it down (also at cleanup).
func startReplica(t *testing.T, is *testissuer.Issuer, logs io.Writer, more string) (*replica, func()) {
	t.Helper()
	yaml := fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: "127.0.0.1:0"
log_level: debug
issuers:
  - name: demo
    issuer: %q
    jwks_uri: %q
    audiences: [orders-api]
%s
policy:
  path: %q
  run_tests: false # as startServerWithPolicy
decision_log:
  output: "off"
`, is.Issuer, is.JWKSURL(), more, repoPolicies(t))
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(context.Background(), cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		})
	}
	t.Cleanup(stop)
	conn := dial(t, srv.GRPCAddr())
	waitServing(t, healthpb.NewHealthClient(conn))
	r := &replica{srv: srv, client: authv3.NewAuthorizationClient(conn), admin: "http://" + srv.AdminAddr()}
	if srv.shared != nil {
		waitStore(t, r, "up")
	}
	return r, stop
}

// waitStore waits (on the store's change signal) until its state is want.
func waitStore(t *testing.T, r *replica, want string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		ch := r.srv.shared.Changed()
		if r.srv.shared.Status().State == want {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("shared state store %+v after 20s, want %s", r.srv.shared.Status(), want)
		}
	}
}

func sharedStateYAML(addrs []string, extra string) string {
	q := make([]string, len(addrs))
	for i, a := range addrs {
		q[i] = fmt.Sprintf("%q", a)
	}
	// A generous command timeout: a Check's own deadline bounds every store call anyway.
	return fmt.Sprintf("shared_state:\n  timeout: 2s\n  redis:\n    addresses: [%s]\n    key_prefix: \"sg-test:\"\n%s", strings.Join(q, ", "), extra)
}

// dpopHolder is a client holding a DPoP key and a token bound to it.
type dpopHolder struct {
	key   crypto.Signer
	token string
}

func newHolder(t *testing.T, is *testissuer.Issuer, k *testissuer.Key) *dpopHolder {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jkt, err := oauth.Thumbprint(key)
	if err != nil {
		t.Fatal(err)
	}
	c := is.Standard("orders-api", "alice", "orders:read", time.Hour)
	c["cnf"] = map[string]any{"jkt": jkt}
	return &dpopHolder{key: key, token: testissuer.Sign(k, c, nil)}
}

var readRoute = map[string]string{"route": "orders-read", "scopes": "orders:read"}

func (h *dpopHolder) proof(t testing.TB) string { return h.proofAt(t, time.Time{}) }

// proofAt makes a proof issued at iat (zero: now).
func (h *dpopHolder) proofAt(t testing.TB, iat time.Time) string {
	t.Helper()
	p, err := oauth.SignProof(h.key, "ES256", oauth.ProofClaims{Method: "GET", URI: "https://api.example.com/orders/1", AccessToken: h.token, IssuedAt: iat})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (h *dpopHolder) request(proof string) *authv3.CheckRequest {
	return envoyRequest("GET", "/orders/1", "DPoP "+h.token, readRoute, map[string]string{"dpop": proof})
}

// outcome classifies an answer: allowed, replayed, store (503 replay_store_unavailable with
// Retry-After) or something else.
func outcome(resp *authv3.CheckResponse) string {
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		return "allowed"
	}
	d := resp.GetDeniedResponse()
	ra, _ := headerValue(d.GetHeaders(), "retry-after")
	challenge, _ := headerValue(d.GetHeaders(), "www-authenticate")
	switch {
	case d.GetStatus().GetCode() == 401 && strings.Contains(challenge, "already used"):
		return "replayed"
	case d.GetStatus().GetCode() == 503 && ra != "" && strings.Contains(d.GetBody(), "try again later"):
		return "store"
	}
	return fmt.Sprintf("other: %d %s %s", d.GetStatus().GetCode(), challenge, d.GetBody())
}

// checkOn asks r, with a generous deadline: the success path must not fail because the
// machine is loaded (the deadline itself is TestStoreKilledMidLoad's subject).
func checkOn(t *testing.T, r *replica, req *authv3.CheckRequest) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := r.client.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return outcome(resp)
}

// Two replicas, one store: a proof accepted on A is refused on B, and on A after a restart;
// an entry lives as long as its proof could be accepted (plus the clock skew allowance),
// then its space is reclaimed. The window is wide enough for a restart on a loaded machine.
func TestSharedReplayAcrossReplicasAndRestart(t *testing.T) {
	store := redistest.Start(t)
	k := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k)
	defer is.Close()
	var logs syncBuffer
	more := "dpop_iat_window: 30s\n" + sharedStateYAML([]string{store.Addr()}, "")
	a, stopA := startReplica(t, is, &logs, more)
	b, _ := startReplica(t, is, &logs, more)
	h := newHolder(t, is, k)

	p := h.proof(t)
	if got := checkOn(t, a, h.request(p)); got != "allowed" {
		t.Fatalf("first use on A: %s", got)
	}
	if got := checkOn(t, b, h.request(p)); got != "replayed" {
		t.Fatalf("replay on B: %s, want refused as replayed", got)
	}
	stopA()
	a2, _ := startReplica(t, is, &logs, more)
	if got := checkOn(t, a2, h.request(p)); got != "replayed" {
		t.Fatalf("replay on A after its restart: %s, want refused", got)
	}
	// A proof issued 28s ago can be accepted for 2s more: its entry lives 2s plus the 2s
	// clock skew allowance, not a whole window.
	old := h.proofAt(t, time.Now().Add(-28*time.Second))
	if got := checkOn(t, a2, h.request(old)); got != "allowed" {
		t.Fatalf("a proof issued 28s ago, 30s window: %s", got)
	}

	keys := store.Keys()
	if len(keys) != 2 {
		t.Fatalf("store keys %v, want the 2 proofs", keys)
	}
	var short string
	for _, key := range keys {
		if !strings.HasPrefix(key, "sg-test:dpop:{") {
			t.Errorf("key %q not under the configured prefix", key)
		}
		pttl, _ := store.Do("PTTL", key)
		var ms int
		fmt.Sscan(pttl, &ms)
		switch {
		case ms > 0 && ms <= 4000:
			short = key
		case ms > 4000 && ms <= 32000: // iat at most now: window 30s + skew 2s
		default:
			t.Errorf("PTTL of %q = %s ms, want within the proof's remaining window plus the clock skew allowance", key, pttl)
		}
	}
	if short == "" {
		t.Fatalf("no entry lives only as long as the old proof can be accepted: %v", keys)
	}
	assertNothingSecret(t, [][]string{keys}, store, &logs, []string{h.token, p}, a2, b)

	// /readyz reports the store.
	if st := readyzShared(t, b); st.State != "up" || st.DPoPReplay != "shared" || st.OnUnavailable != "fail_closed" {
		t.Errorf("/readyz shared_state %+v: want up, shared, fail_closed", st)
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		if n, _ := store.Do("EXISTS", short); n == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still there 20s after its proof's window", short)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if keys := store.Keys(); len(keys) != 1 {
		t.Errorf("keys %v after the old proof's entry expired, want the live one only", keys)
	}
	if got := checkOn(t, b, h.request(old)); got == "allowed" {
		t.Fatal("the old proof accepted again after its entry expired")
	}
}

// readyzShared reads /readyz's shared_state (the replica stays ready either way).
func readyzShared(t *testing.T, r *replica) (st struct{ State, DPoPReplay, OnUnavailable, Introspection string }) {
	t.Helper()
	body := httpGet(t, r.admin+"/readyz", 200)
	var rz struct {
		Details struct {
			SharedState *struct {
				State         string `json:"state"`
				DPoPReplay    string `json:"dpop_replay"`
				OnUnavailable string `json:"on_unavailable"`
				Introspection string `json:"introspection"`
			} `json:"shared_state"`
		} `json:"details"`
	}
	if err := json.Unmarshal([]byte(body), &rz); err != nil || rz.Details.SharedState == nil {
		t.Fatalf("/readyz %s: no shared_state (%v)", body, err)
	}
	ss := rz.Details.SharedState
	st.State, st.DPoPReplay, st.OnUnavailable, st.Introspection = ss.State, ss.DPoPReplay, ss.OnUnavailable, ss.Introspection
	return st
}

// assertNothingSecret checks that no token or proof is in the store's keys or values, the
// logs, or the replicas' metrics.
func assertNothingSecret(t *testing.T, keysByNode [][]string, store *redistest.Server, logs *syncBuffer, secrets []string, rs ...*replica) {
	t.Helper()
	var hay []string
	for _, keys := range keysByNode {
		for _, k := range keys {
			hay = append(hay, "key "+k)
			if store != nil {
				v, _ := store.Do("GET", k)
				hay = append(hay, "value of "+k+": "+v)
			}
		}
	}
	hay = append(hay, "logs: "+logs.String())
	for _, r := range rs {
		hay = append(hay, "metrics: "+httpGet(t, r.admin+"/metrics", 200), "readyz: "+httpGet(t, r.admin+"/readyz", 200))
	}
	for _, s := range secrets {
		for _, part := range append([]string{s}, strings.Split(s, ".")...) {
			if len(part) < 16 {
				continue
			}
			for _, h := range hay {
				if strings.Contains(h, part) {
					t.Errorf("a token or proof (part %.12s…) appears in %.80s…", part, h)
				}
			}
		}
	}
}

// The same across the shards of a three-master Redis Cluster: many keys, each proof refused
// on the other replica.
func TestSharedReplayCluster(t *testing.T) {
	cluster := redistest.StartCluster(t)
	k := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k)
	defer is.Close()
	var logs syncBuffer
	more := sharedStateYAML(cluster.Addrs(), "")
	a, _ := startReplica(t, is, &logs, more)
	b, _ := startReplica(t, is, &logs, more)
	var secrets []string
	for i := range 24 {
		h := newHolder(t, is, k)
		p := h.proof(t)
		first, second := a, b
		if i%2 == 1 {
			first, second = b, a
		}
		if got := checkOn(t, first, h.request(p)); got != "allowed" {
			t.Fatalf("holder %d first use: %s", i, got)
		}
		if got := checkOn(t, second, h.request(p)); got != "replayed" {
			t.Fatalf("holder %d replay on the other replica: %s", i, got)
		}
		secrets = append(secrets, h.token, p)
	}
	keys := cluster.Keys()
	total := 0
	for node, ks := range keys {
		if len(ks) == 0 {
			t.Errorf("cluster node %d holds none of 24 keys' proofs", node)
		}
		total += len(ks)
	}
	if total != 24 {
		t.Errorf("%d keys in the cluster, want 24", total)
	}
	assertNothingSecret(t, keys, nil, &logs, secrets, a, b)
}

// The store killed under load: every DPoP Check is answered within Envoy's 250 ms deadline,
// 503 replay_store_unavailable (fail_closed) or decided by the replica's own cache (local);
// the store back, replay protection across replicas resumes without a restart.
func TestStoreKilledMidLoad(t *testing.T) {
	for _, mode := range []string{"fail_closed", "local"} {
		t.Run(mode, func(t *testing.T) {
			store := redistest.Start(t)
			k := testissuer.NewKey("k1", "ES256")
			is := testissuer.New(k)
			defer is.Close()
			var logs syncBuffer
			more := sharedStateYAML([]string{store.Addr()}, "  on_unavailable: "+mode+"\n")
			a, _ := startReplica(t, is, &logs, more)
			b, _ := startReplica(t, is, &logs, more)
			h := newHolder(t, is, k)

			var (
				mu     sync.Mutex
				counts = map[string]int{}
				killed atomic.Bool
				after  atomic.Int32 // Checks answered after the kill
				wg     sync.WaitGroup
			)
			done := make(chan struct{})
			for w := range 2 {
				r := []*replica{a, b}[w]
				wg.Go(func() {
					for i := 0; i < 400; i++ {
						select {
						case <-done:
							return
						default:
						}
						wasKilled := killed.Load()
						req := h.request(h.proof(t))
						// Envoy's 250 ms deadline: answered before it, or a failure.
						ctx, cancel := context.WithTimeout(context.Background(), envoyTimeout)
						start := time.Now()
						resp, err := r.client.Check(ctx, req)
						took := time.Since(start)
						cancel()
						got := "late"
						if err != nil || took >= envoyTimeout {
							t.Errorf("Check answered after %s (%v), past Envoy's %s timeout", took, err, envoyTimeout)
						} else {
							got = outcome(resp)
						}
						mu.Lock()
						counts[fmt.Sprint(wasKilled, " ", got)]++
						mu.Unlock()
						if wasKilled {
							after.Add(1)
						}
					}
				})
			}
			// Let some Checks through with the store up, then kill it mid-load.
			for {
				mu.Lock()
				n := counts["false allowed"]
				mu.Unlock()
				if n >= 20 {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			store.Kill()
			killed.Store(true)
			for after.Load() < 100 {
				time.Sleep(5 * time.Millisecond)
			}
			close(done)
			wg.Wait()
			t.Logf("%s: %v", mode, counts)
			want, ok := "true store", map[string]bool{"false allowed": true, "false store": true, "true store": true}
			if mode == "local" {
				want, ok = "true allowed", map[string]bool{"false allowed": true, "true allowed": true}
			}
			for k, n := range counts {
				if !ok[k] {
					t.Errorf("%d Checks answered %q (killed, outcome)", n, k)
				}
			}
			if counts[want] < 90 {
				t.Errorf("only %d Checks answered %q after the kill: %v", counts[want], want, counts)
			}
			if mode == "local" {
				// Decided locally: a replay on the same replica is still refused.
				p := h.proof(t)
				if got := checkOn(t, a, h.request(p)); got != "allowed" {
					t.Fatalf("local fallback, first use: %s", got)
				}
				if got := checkOn(t, a, h.request(p)); got != "replayed" {
					t.Fatalf("local fallback, replay on the same replica: %s", got)
				}
				waitStore(t, a, "down")
				if st := readyzShared(t, a); st.State != "down" || st.DPoPReplay != "local" {
					t.Errorf("/readyz shared_state while down with on_unavailable: local: %+v", st)
				}
				if !strings.Contains(logs.String(), "on_unavailable: local") {
					t.Error("the log does not say replay protection fell back to each replica")
				}
				if m := httpGet(t, a.admin+"/metrics", 200); !strings.Contains(m, `scopegate_shared_state_fallback_total{use="dpop_replay"}`) {
					t.Error("no fallback metric")
				}
			}

			store.Restart()
			waitStore(t, a, "up")
			waitStore(t, b, "up")
			p := h.proof(t)
			if got := checkOn(t, a, h.request(p)); got != "allowed" {
				t.Fatalf("store back, first use: %s", got)
			}
			if got := checkOn(t, b, h.request(p)); got != "replayed" {
				t.Fatalf("store back, replay on B: %s", got)
			}
		})
	}
}

// introspectionIdP is an RFC 7662 endpoint that finds every token active, counts its calls,
// and can hold its answers until released.
type introspectionIdP struct {
	*httptest.Server
	calls   atomic.Int32
	arrived chan struct{} // a call arrived (buffered)
	release chan struct{} // closed: answer
}

func newIntrospectionIdP(t *testing.T, issuer string) *introspectionIdP {
	idp := &introspectionIdP{arrived: make(chan struct{}, 100), release: make(chan struct{})}
	close(idp.release)
	idp.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		idp.calls.Add(1)
		idp.arrived <- struct{}{}
		<-idp.release
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"active": true, "sub": "alice-introspected", "scope": "orders:read",
			"client_id": "cli", "iss": issuer, "aud": "orders-api", "exp": time.Now().Add(time.Hour).Unix(), "token_type": "Bearer"})
	}))
	t.Cleanup(idp.Close)
	return idp
}

func (idp *introspectionIdP) hold() { idp.release = make(chan struct{}) }

// Two replicas introspecting the same opaque token within cache_ttl make one IdP call, one
// after the other and when their first Checks come at once; the store holds neither the
// token nor the answer's claims.
func TestSharedIntrospection(t *testing.T) {
	store := redistest.Start(t)
	k := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k)
	defer is.Close()
	idp := newIntrospectionIdP(t, is.Issuer)
	dir := t.TempDir()
	secret, key := filepath.Join(dir, "secret"), filepath.Join(dir, "key")
	if err := os.WriteFile(secret, []byte("introspection-client-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, []byte("k7Yp2vQ9sX4mB8nL1cR6tW3zH5jF0gDa\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	more := fmt.Sprintf(`    introspection:
      endpoint: %q
      client_id: orders-api
      client_secret_file: %q
      cache_ttl: 1m
`, idp.URL, secret) + sharedStateYAML([]string{store.Addr()}, fmt.Sprintf("  key_file: %q\n", key))
	var logs syncBuffer
	a, _ := startReplica(t, is, &logs, more)
	b, _ := startReplica(t, is, &logs, more)

	req := func(tok string) *authv3.CheckRequest {
		return envoyRequest("GET", "/orders/1", "Bearer "+tok, readRoute, nil)
	}
	tok1 := "opaque-ZXhhbXBsZS10b2tlbi0x-first"
	if got := checkOn(t, a, req(tok1)); got != "allowed" {
		t.Fatalf("A: %s", got)
	}
	if got := checkOn(t, b, req(tok1)); got != "allowed" {
		t.Fatalf("B: %s", got)
	}
	if n := idp.calls.Load(); n != 1 {
		t.Fatalf("%d IdP calls for one token on two replicas, want 1", n)
	}

	// First Checks at once: A asks (held at the IdP), B finds A's claim and waits for its answer.
	tok2 := "opaque-ZXhhbXBsZS10b2tlbi0y-second"
	idp.hold()
	results := make(chan string, 6)
	slow := func(r *replica) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := r.client.Check(ctx, req(tok2))
		if err != nil {
			results <- err.Error()
			return
		}
		results <- outcome(resp)
	}
	go slow(a)
	<-idp.arrived
	for range 5 {
		go slow(b)
	}
	// B has looked (a miss) and found the claim taken: from here it waits for A's answer.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(httpGet(t, b.admin+"/metrics", 200), `scopegate_shared_state_calls_total{op="claim"} 1`) {
		if time.Now().After(deadline) {
			t.Fatal("replica B never tried to claim the token")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(idp.release)
	for range 6 {
		if got := <-results; got != "allowed" {
			t.Errorf("concurrent first Check: %s", got)
		}
	}
	if n := idp.calls.Load(); n != 2 {
		t.Fatalf("%d IdP calls in all, want 2 (one per token)", n)
	}
	assertNothingSecret(t, [][]string{store.Keys()}, store, &logs, []string{tok1, tok2}, a, b)
	for _, k := range store.Keys() {
		v, _ := store.Do("GET", k)
		if strings.Contains(v, "alice-introspected") || strings.Contains(v, "orders:read") {
			t.Errorf("the answer's claims are readable in the store under %q", k)
		}
	}

	// Store down: introspection goes to the IdP as without sharing.
	store.Kill()
	if got := checkOn(t, b, req("opaque-dGhpcmQtdG9rZW4-third")); got != "allowed" {
		t.Fatalf("with the store down: %s", got)
	}
	if n := idp.calls.Load(); n != 3 {
		t.Fatalf("%d IdP calls, want 3", n)
	}
}
