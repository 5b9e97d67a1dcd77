package token

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/extauthz/introspect"
	"github.com/scopegate/scopegate/internal/contract"
)

// opaque is shaped like zitadel's opaque tokens: five dot-separated parts, not a JWS.
const opaque = "eyJhbGciOiJkaXIifQ.part2.part3.part4.secret-opaque-token-1"

// fakeIdP is an RFC 7662 endpoint whose answer a test sets per token.
type fakeIdP struct {
	srv    *httptest.Server
	calls  atomic.Int64
	mu     sync.Mutex
	answer func(token string) (status int, body string)
	gate   chan struct{} // when set, every call waits for it to close (or the client to give up)
	// arrived, when set, gets a value as each call reaches the IdP (before the gate).
	arrived chan struct{}
}

func newFakeIdP(t *testing.T) *fakeIdP {
	f := &fakeIdP{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if !ok || id != "scopegate" || secret != "s3cret" || r.Method != http.MethodPost ||
			r.FormValue("token_type_hint") != "access_token" || r.URL.RawQuery != "" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		f.calls.Add(1)
		f.mu.Lock()
		answer, gate, arrived := f.answer, f.gate, f.arrived
		f.mu.Unlock()
		if arrived != nil {
			arrived <- struct{}{}
		}
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		status, body := answer(r.FormValue("token"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIdP) set(answer func(string) (int, string)) {
	f.mu.Lock()
	f.answer = answer
	f.mu.Unlock()
}

func (f *fakeIdP) always(status int, body string) {
	f.set(func(string) (int, string) { return status, body })
}

// clock is a settable time for cache expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type introRig struct {
	idp     *fakeIdP
	v       *Verifier
	clock   *clock
	cache   *Cache
	reg     *prometheus.Registry
	logs    *bytes.Buffer
	issuer  config.Issuer
	metrics *introspect.Metrics
}

const introIss = "https://idp.example.com/"

func introIssuer(name, endpoint string) config.Issuer {
	return config.Issuer{Name: name, Issuer: introIss, Audiences: []string{"orders-api"}, Leeway: 30 * time.Second,
		FetchTimeout: 2 * time.Second, ScopeClaims: []string{"scope"}, ClientIDClaims: []string{"client_id"},
		Introspection: &config.Introspection{Endpoint: endpoint, ClientID: "scopegate", CacheTTL: time.Minute, NegativeCacheTTL: 5 * time.Second}}
}

func newIntroRig(t *testing.T, cacheSize int) *introRig {
	t.Helper()
	r := &introRig{idp: newFakeIdP(t), clock: &clock{t: time.Unix(1_800_000_000, 0)}, reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}}
	r.metrics = introspect.NewMetrics(r.reg)
	r.issuer = introIssuer("corp", r.idp.srv.URL+"/introspect")
	c, err := introspect.New(introspect.Options{Name: "corp", Issuer: introIss, Endpoint: r.issuer.Introspection.Endpoint,
		ClientID: "scopegate", ClientSecret: "s3cret", Timeout: 2 * time.Second, Metrics: r.metrics})
	if err != nil {
		t.Fatal(err)
	}
	r.cache = NewCache(cacheSize)
	r.v = NewVerifier(Options{Issuers: []Issuer{issuerOf(r.issuer, nil, c)}, Cache: r.cache, Now: r.clock.now,
		Logger: slog.New(slog.NewTextHandler(&syncWriter{w: r.logs}, nil))})
	return r
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// active is an active answer expiring in d from the rig's clock, with extra members.
func (r *introRig) active(d time.Duration, extra string) string {
	exp := r.clock.now().Add(d).Unix()
	return fmt.Sprintf(`{"active":true,"scope":"orders:read orders:write","client_id":"orders-cli","sub":"svc-1","iss":%q,"aud":["orders-api"],"exp":%d,"iat":%d,"token_type":"Bearer","jti":"j1"%s}`,
		introIss, exp, r.clock.now().Unix(), extra)
}

// counter reads scopegate_introspection_<name>_total{result}.
func (r *introRig) counter(name, result string) float64 {
	mfs, _ := r.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "scopegate_introspection_"+name+"_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestIntrospectionAnswers(t *testing.T) {
	r := newIntroRig(t, 1000)
	now := r.clock.now()
	tests := []struct {
		name   string
		status int
		body   string
		reason string // "" for accepted
	}{
		{"active", 200, r.active(time.Hour, ""), ""},
		{"active without iss", 200, fmt.Sprintf(`{"active":true,"scope":"orders:read","aud":"orders-api","exp":%d}`, now.Add(time.Hour).Unix()), ""},
		// Without aud nothing says the token is for this API (allow_missing_audience: below).
		{"active without aud", 200, fmt.Sprintf(`{"active":true,"scope":"orders:read","exp":%d}`, now.Add(time.Hour).Unix()), contract.ReasonWrongAudience},
		{"active with an empty aud list", 200, fmt.Sprintf(`{"active":true,"scope":"orders:read","aud":[],"exp":%d}`, now.Add(time.Hour).Unix()), contract.ReasonWrongAudience},
		{"aud as a string", 200, fmt.Sprintf(`{"active":true,"aud":"orders-api","exp":%d}`, now.Add(time.Hour).Unix()), ""},
		{"expired within leeway", 200, r.active(-10*time.Second, ""), ""},
		{"inactive", 200, `{"active":false}`, contract.ReasonInactive},
		{"expired", 200, r.active(-time.Minute, ""), contract.ReasonExpired},
		{"no exp", 200, `{"active":true,"scope":"orders:read"}`, contract.ReasonMissingExp},
		{"not yet valid", 200, r.active(time.Hour, fmt.Sprintf(`,"nbf":%d`, now.Add(time.Hour).Unix())), contract.ReasonNotYetValid},
		{"wrong iss", 200, strings.Replace(r.active(time.Hour, ""), introIss, "https://evil.example/", 1), contract.ReasonUnknownIssuer},
		{"wrong aud", 200, strings.Replace(r.active(time.Hour, ""), `"aud":["orders-api"]`, `"aud":["billing-api"]`, 1), contract.ReasonWrongAudience},
		{"refresh token", 200, strings.Replace(r.active(time.Hour, ""), `"token_type":"Bearer"`, `"token_type":"refresh_token"`, 1), contract.ReasonWrongTyp},
		{"token_use refresh", 200, r.active(time.Hour, `,"token_use":"refresh"`), contract.ReasonWrongTyp},
		{"token_use id", 200, r.active(time.Hour, `,"token_use":"id"`), contract.ReasonWrongTyp},
		{"token_use access", 200, r.active(time.Hour, `,"token_use":"access"`), ""},
		// A cnf with no confirmation method scopegate checks is a bound token it can't
		// check: refused (401), never taken for an unbound one.
		{"cnf empty", 200, r.active(time.Hour, `,"cnf":{}`), contract.ReasonMalformed},
		{"cnf jwk", 200, r.active(time.Hour, `,"cnf":{"jwk":{"kty":"EC","crv":"P-256","x":"x","y":"y"}}`), contract.ReasonMalformed},
		{"cnf kid", 200, r.active(time.Hour, `,"cnf":{"kid":"k1"}`), contract.ReasonMalformed},
		{"cnf x5t#s256 in another case", 200, r.active(time.Hour, `,"cnf":{"x5t#s256":"abc"}`), contract.ReasonMalformed},
		{"cnf jkt and an unknown member", 200, r.active(time.Hour, `,"cnf":{"jkt":"abc","jwk":{}}`), contract.ReasonMalformed},
		// The IdP's faults are ours to answer 503 for, never the client's 401.
		{"malformed JSON", 200, `{"active":tru`, contract.ReasonIntrospectionUnavailable},
		{"not an object", 200, `[true]`, contract.ReasonIntrospectionUnavailable},
		{"active not a boolean", 200, `{"active":"true","exp":4000000000}`, contract.ReasonIntrospectionUnavailable},
		{"no active member", 200, `{"exp":4000000000}`, contract.ReasonIntrospectionUnavailable},
		{"scope not a string", 200, r.active(time.Hour, "") + "x", contract.ReasonIntrospectionUnavailable},
		{"scope wrong type", 200, strings.Replace(r.active(time.Hour, ""), `"scope":"orders:read orders:write"`, `"scope":12`, 1), contract.ReasonIntrospectionUnavailable},
		{"active named twice", 200, `{"active":false,"active":true,"exp":4000000000}`, contract.ReasonIntrospectionUnavailable},
		{"huge body", 200, r.active(time.Hour, `,"pad":"`+strings.Repeat("a", introspect.MaxResponseBytes)+`"`), contract.ReasonIntrospectionUnavailable},
		{"server error", 500, `{"active":true}`, contract.ReasonIntrospectionUnavailable},
		{"client not accepted", 401, `{"error":"invalid_client"}`, contract.ReasonIntrospectionUnavailable},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.idp.always(tt.status, tt.body)
			tok := fmt.Sprintf("opaque-token-%d", i) // a fresh token: no cached answer
			id, err := r.v.Verify(context.Background(), tok)
			if got := reasonOf(err); got != tt.reason {
				t.Fatalf("reason = %q, want %q", got, tt.reason)
			}
			if err != nil {
				var te *denial.Denial
				errors.As(err, &te)
				if (te.Kind == denial.Unavailable) != (tt.reason == contract.ReasonIntrospectionUnavailable) {
					t.Errorf("Unavailable = %v for %s", (te.Kind == denial.Unavailable), tt.reason)
				}
				if strings.Contains(te.Error(), tok) {
					t.Errorf("the error shows the token: %v", te)
				}
				return
			}
			if id.Source != SourceIntrospection || id.Issuer != "corp" || id.Iss != introIss {
				t.Errorf("identity = source %q issuer %q iss %q", id.Source, id.Issuer, id.Iss)
			}
		})
	}
	if strings.Contains(r.logs.String(), "opaque-token-") {
		t.Errorf("a token reached the log:\n%s", r.logs)
	}
}

// allow_missing_audience: a provider that never sends aud can be accepted, by choice.
func TestIntrospectionAllowMissingAudience(t *testing.T) {
	r := newIntroRig(t, 1000)
	r.issuer.Introspection.AllowMissingAudience = true
	c, err := introspect.New(introspect.Options{Name: "corp", Issuer: introIss, Endpoint: r.issuer.Introspection.Endpoint,
		ClientID: "scopegate", ClientSecret: "s3cret", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(Options{Issuers: []Issuer{issuerOf(r.issuer, nil, c)}, Now: r.clock.now})
	r.idp.always(200, fmt.Sprintf(`{"active":true,"scope":"orders:read","exp":%d}`, r.clock.now().Add(time.Hour).Unix()))
	if _, err := v.Verify(context.Background(), "opaque-1"); err != nil {
		t.Fatalf("no aud with allow_missing_audience: %v", err)
	}
	r.idp.always(200, fmt.Sprintf(`{"active":true,"aud":"billing-api","exp":%d}`, r.clock.now().Add(time.Hour).Unix()))
	if _, err := v.Verify(context.Background(), "opaque-2"); reasonOf(err) != contract.ReasonWrongAudience {
		t.Fatalf("another audience with allow_missing_audience: %v; want wrong_audience", err)
	}
}

// The identity, headers and policy input read an introspected token as they read a JWT.
func TestIntrospectionIdentity(t *testing.T) {
	r := newIntroRig(t, 1000)
	r.idp.always(200, r.active(time.Hour, `,"cnf":{"x5t#S256":"abc"},"tenant":"t1"`))
	id, err := r.v.Verify(context.Background(), opaque)
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "svc-1" || id.ClientID != "orders-cli" || id.ScopeString != "orders:read orders:write" ||
		strings.Join(id.Audience, ",") != "orders-api" || id.JTI != "j1" || !id.ExpiresAt.Equal(r.clock.now().Add(time.Hour).Truncate(time.Second)) ||
		id.IssuedAt.IsZero() {
		t.Errorf("identity = %+v", id)
	}
	cnf, _ := id.Claims()["cnf"].(map[string]any)
	if cnf["x5t#S256"] != "abc" || id.Claims()["tenant"] != "t1" {
		t.Errorf("claims = %v; want cnf and every other member", id.Claims())
	}
	// The binding is the identity's as for a JWT, so authz enforces it (DPoP proof or client
	// certificate) for opaque tokens too.
	if id.X5T != "abc" || id.Binding() != "mtls" {
		t.Errorf("binding = %q (x5t %q), want mtls", id.Binding(), id.X5T)
	}
	// The authentication claims, as RFC 9470 §6.2 registers them for introspection answers.
	r.idp.always(200, r.active(time.Hour, `,"acr":"urn:mfa","amr":["pwd","otp"],"auth_time":1800000000`))
	id, err = r.v.Verify(context.Background(), "opaque-with-authn")
	if err != nil || id.ACR != "urn:mfa" || strings.Join(id.AMR, " ") != "pwd otp" || id.AuthTime.Unix() != 1800000000 || id.Leeway != 30*time.Second {
		t.Fatalf("authentication of an opaque token: %+v %v", id, err)
	}
	r.idp.always(200, r.active(time.Hour, `,"acr":2`))
	if _, err := r.v.Verify(context.Background(), "opaque-with-bad-acr"); err == nil {
		t.Fatal("an answer whose acr is not a string was accepted")
	}
	r.idp.always(200, strings.Replace(r.active(time.Hour, `,"cnf":{"jkt":"thumb"}`), `"token_type":"Bearer"`, `"token_type":"DPoP"`, 1))
	id, err = r.v.Verify(context.Background(), "another-opaque-token")
	if err != nil || id.JKT != "thumb" || id.Binding() != "dpop" {
		t.Fatalf("DPoP-bound opaque token: %+v %v", id, err)
	}
}

// A positive answer is reused until min(exp, now+cache_ttl) with no call; after that a new
// call; while the IdP fails, the last positive answer stands in until exp, then 503.
func TestIntrospectionCacheAndIdPFailure(t *testing.T) {
	r := newIntroRig(t, 1000)
	r.idp.always(200, r.active(3*time.Minute, ""))
	first, err := r.v.Verify(context.Background(), opaque)
	if err != nil {
		t.Fatal(err)
	}
	r.clock.add(59 * time.Second)
	if again, err := r.v.Verify(context.Background(), opaque); err != nil || again != first || r.idp.calls.Load() != 1 {
		t.Fatalf("within cache_ttl: %v, %v, %d calls; want the cached identity and 1 call", again, err, r.idp.calls.Load())
	}
	r.clock.add(2 * time.Second) // past cache_ttl: asked again
	r.idp.always(503, `{"error":"temporarily_unavailable"}`)
	if again, err := r.v.Verify(context.Background(), opaque); err != nil || again != first {
		t.Fatalf("IdP failing, cached positive before exp: %v, %v; want the cached identity", again, err)
	}
	if r.idp.calls.Load() != 2 || r.counter("cache", "stale") != 1 {
		t.Fatalf("calls = %d, stale uses = %v; want a second call and one stale use", r.idp.calls.Load(), r.counter("cache", "stale"))
	}
	r.idp.srv.CloseClientConnections()
	r.idp.srv.Close() // down altogether
	if again, err := r.v.Verify(context.Background(), opaque); err != nil || again != first {
		t.Fatalf("IdP down, cached positive before exp: %v, %v", again, err)
	}
	r.clock.add(2 * time.Minute) // past exp
	if _, err := r.v.Verify(context.Background(), opaque); reasonOf(err) != contract.ReasonIntrospectionUnavailable {
		t.Fatalf("IdP down, cached answer expired: %v; want introspection_unavailable", err)
	}
	if _, err := r.v.Verify(context.Background(), "never-seen-token"); reasonOf(err) != contract.ReasonIntrospectionUnavailable {
		t.Fatalf("IdP down, nothing cached: %v; want introspection_unavailable", err)
	}
	if strings.Contains(r.logs.String(), opaque) || strings.Contains(r.logs.String(), "never-seen-token") {
		t.Errorf("a token reached the log:\n%s", r.logs)
	}
	if !strings.Contains(r.logs.String(), "token introspection failed") {
		t.Errorf("IdP failures are not logged:\n%s", r.logs)
	}
}

// A positive answer is not reused past the token's exp, even inside cache_ttl.
func TestIntrospectionCacheStopsAtExp(t *testing.T) {
	r := newIntroRig(t, 1000)
	r.idp.always(200, r.active(20*time.Second, ""))
	if _, err := r.v.Verify(context.Background(), opaque); err != nil {
		t.Fatal(err)
	}
	r.clock.add(21 * time.Second)
	r.idp.always(200, `{"active":false}`)
	if _, err := r.v.Verify(context.Background(), opaque); reasonOf(err) != contract.ReasonInactive || r.idp.calls.Load() != 2 {
		t.Fatalf("after exp: %v, %d calls; want a new call answering inactive", err, r.idp.calls.Load())
	}
}

func TestIntrospectionNegativeCache(t *testing.T) {
	r := newIntroRig(t, 1000)
	r.idp.always(200, `{"active":false}`)
	for range 3 {
		if _, err := r.v.Verify(context.Background(), opaque); reasonOf(err) != contract.ReasonInactive {
			t.Fatalf("err = %v, want inactive", err)
		}
	}
	if n := r.idp.calls.Load(); n != 1 || r.counter("cache", "negative_hit") != 2 {
		t.Fatalf("calls = %d, negative hits = %v; want 1 call and 2 hits", n, r.counter("cache", "negative_hit"))
	}
	r.clock.add(6 * time.Second) // past negative_cache_ttl
	r.idp.always(200, r.active(time.Hour, ""))
	if _, err := r.v.Verify(context.Background(), opaque); err != nil || r.idp.calls.Load() != 2 {
		t.Fatalf("after negative_cache_ttl: %v, %d calls; want a new call", err, r.idp.calls.Load())
	}
}

// A slow IdP is waited on only until the Check's deadline less DeadlineMargin: Envoy gets
// its 503 in time. The call goes on; its answer is cached for the next Check.
func TestIntrospectionSlowIdPAnswersBeforeDeadline(t *testing.T) {
	r := newIntroRig(t, 1000)
	gate := make(chan struct{})
	r.idp.mu.Lock()
	r.idp.gate = gate
	r.idp.mu.Unlock()
	r.idp.always(200, r.active(time.Hour, ""))
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.v.Verify(ctx, opaque)
	took := time.Since(start)
	if reasonOf(err) != contract.ReasonIntrospectionUnavailable {
		t.Fatalf("err = %v, want introspection_unavailable", err)
	}
	// Before the deadline (the margin absorbs a loaded machine's timer lag), and not long before.
	if took >= 250*time.Millisecond || took < 250*time.Millisecond-2*DeadlineMargin {
		t.Fatalf("answered after %s; want about %s (deadline less the margin), never at the deadline", took, 250*time.Millisecond-DeadlineMargin)
	}
	// A caller whose budget is already spent does not wait at all.
	short, scancel := context.WithTimeout(context.Background(), DeadlineMargin/2)
	defer scancel()
	if _, err := r.v.Verify(short, "another-token"); reasonOf(err) != contract.ReasonIntrospectionUnavailable {
		t.Fatalf("no budget: %v", err)
	}
	close(gate) // the IdP answers the call that is still running; the answer is cached
	deadline := time.Now().Add(5 * time.Second)
	for r.cache.Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling the cache: the detached call has no other signal
	}
	calls := r.idp.calls.Load()
	if _, err := r.v.Verify(context.Background(), opaque); err != nil || r.idp.calls.Load() != calls {
		t.Fatalf("after the slow answer arrived: %v, calls %d → %d; want it cached", err, calls, r.idp.calls.Load())
	}
}

// A flood of distinct junk tokens opens at most max_concurrent calls (64 by default) to the
// IdP; a new token beyond that gets 503 introspection_overloaded at once, long before its
// deadline, and no call. Once calls finish, new tokens are checked again.
func TestIntrospectionMaxConcurrent(t *testing.T) {
	r := newIntroRig(t, 1000)
	const limit = 64 // introspect.DefaultMaxConcurrent
	gate, arrived := make(chan struct{}), make(chan struct{}, 2*limit)
	r.idp.mu.Lock()
	r.idp.gate, r.idp.arrived = gate, arrived
	r.idp.mu.Unlock()
	r.idp.always(200, `{"active":false}`)
	var wg sync.WaitGroup
	for i := range limit {
		wg.Go(func() { _, _ = r.v.Verify(context.Background(), fmt.Sprintf("junk-%d", i)) })
	}
	for range limit {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d calls reached the IdP", r.idp.calls.Load())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	_, err := r.v.Verify(ctx, "one-junk-token-too-many")
	if reasonOf(err) != contract.ReasonIntrospectionOverloaded || ctx.Err() != nil {
		t.Fatalf("beyond max_concurrent: %v (deadline passed: %v); want introspection_overloaded before the deadline", err, ctx.Err())
	}
	var te *denial.Denial
	if !errors.As(err, &te) || te.Kind != denial.Unavailable {
		t.Fatalf("not answered as unavailable (503 with Retry-After): %v", err)
	}
	if n := r.idp.calls.Load(); n != limit {
		t.Fatalf("the IdP got %d calls; want %d", n, limit)
	}
	close(gate)
	wg.Wait()
	if _, err := r.v.Verify(context.Background(), "after-the-flood"); reasonOf(err) != contract.ReasonInactive {
		t.Fatalf("after the calls finished: %v; want the IdP's answer (inactive)", err)
	}
}

// Refusals have a store of their own: a flood of junk tokens (each answered inactive, and
// cached for negative_cache_ttl) never evicts a cached valid answer.
func TestIntrospectionRefusalsNeverEvictValidAnswers(t *testing.T) {
	r := newIntroRig(t, 640) // 10 per shard
	r.idp.set(func(tok string) (int, string) {
		if strings.HasPrefix(tok, "valid-") {
			return 200, r.active(time.Hour, "")
		}
		return 200, `{"active":false}`
	})
	const valid = 200
	for i := range valid {
		if _, err := r.v.Verify(context.Background(), fmt.Sprintf("valid-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2000 {
		if _, err := r.v.Verify(context.Background(), fmt.Sprintf("junk-%d", i)); reasonOf(err) != contract.ReasonInactive {
			t.Fatalf("junk: %v", err)
		}
	}
	calls := r.idp.calls.Load()
	for i := range valid {
		if _, err := r.v.Verify(context.Background(), fmt.Sprintf("valid-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if again := r.idp.calls.Load() - calls; again != 0 {
		t.Fatalf("%d of %d valid answers were evicted by junk and asked again", again, valid)
	}
}

// The refusals' store is bounded on its own.
func TestNegativeCacheBounded(t *testing.T) {
	c := NewCacheSized(640, 64)
	is := &issuer{}
	for i := range 5000 {
		k := [32]byte{byte(i), byte(i >> 8)}
		c.put(&k, &entry{is: is, err: errIntrospectionUnavailable, expiry: 1 << 62}, 0)
	}
	if n := c.NegativeLen(); n == 0 || n > 64 {
		t.Fatalf("%d refusals kept; want 1..64", n)
	}
	if c.Len() != 0 {
		t.Fatalf("refusals counted as verified tokens: %d", c.Len())
	}
	if none := NewCacheSized(640, 0); none.get(&[32]byte{}) != nil {
		t.Fatal("a cache with no refusals' store answered")
	} else {
		k := [32]byte{1}
		none.put(&k, &entry{is: is, err: errIntrospectionUnavailable, expiry: 1 << 62}, 0)
		if none.get(&k) != nil || none.NegativeLen() != 0 {
			t.Fatal("max_negative_entries 0 kept a refusal")
		}
	}
}

// Concurrent first Checks of one token share one introspection call and one identity.
func TestIntrospectionConcurrentFirstChecksShareOneCall(t *testing.T) {
	r := newIntroRig(t, 1000)
	gate := make(chan struct{})
	r.idp.mu.Lock()
	r.idp.gate = gate
	r.idp.mu.Unlock()
	r.idp.always(200, r.active(time.Hour, ""))
	const n = 20
	ids := make([]*Identity, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { ids[i], errs[i] = r.v.Verify(context.Background(), opaque) })
	}
	// Every Check counts its miss after joining the call: release the IdP only then.
	deadline := time.Now().Add(5 * time.Second)
	for r.counter("cache", "miss") < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("Check %d: %v, %p; want the shared identity %p", i, errs[i], ids[i], ids[0])
		}
	}
	if c := r.idp.calls.Load(); c != 1 {
		t.Fatalf("%d introspection calls for %d concurrent Checks of one token; want 1", c, n)
	}
	if got := r.counter("calls", "active"); got != 1 {
		t.Fatalf("calls metric = %v, want 1", got)
	}
}

// The cache is bounded: a flood of distinct opaque tokens never grows it past its size.
func TestIntrospectionCacheBound(t *testing.T) {
	r := newIntroRig(t, 64)
	r.idp.always(200, r.active(time.Hour, ""))
	for i := range 500 {
		if _, err := r.v.Verify(context.Background(), fmt.Sprintf("flood-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.cache.Len(); n > 64 || n == 0 {
		t.Fatalf("cache holds %d entries; want 1..64", n)
	}
}

// Routing: a JWS never goes to introspection; an opaque token goes to the first introspecting
// issuer whose token_prefix it has; an introspection-only issuer refuses a JWS.
func TestIntrospectionRouting(t *testing.T) {
	a, b := newFakeIdP(t), newFakeIdP(t)
	a.always(200, fmt.Sprintf(`{"active":true,"sub":"from-a","aud":"orders-api","exp":%d}`, time.Now().Add(time.Hour).Unix()))
	b.always(200, fmt.Sprintf(`{"active":true,"sub":"from-b","aud":"orders-api","exp":%d}`, time.Now().Add(time.Hour).Unix()))
	ca, cb := introIssuer("a", a.srv.URL), introIssuer("b", b.srv.URL)
	ca.Issuer, cb.Issuer = "https://a.example/", "https://b.example/"
	ca.Introspection.TokenPrefix = "a_"
	mk := func(c config.Issuer, url string) *introspect.Client {
		cl, err := introspect.New(introspect.Options{Name: c.Name, Issuer: c.Issuer, Endpoint: url, ClientID: "scopegate", ClientSecret: "s3cret"})
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	v := NewVerifier(Options{Issuers: []Issuer{issuerOf(ca, nil, mk(ca, a.srv.URL)), issuerOf(cb, nil, mk(cb, b.srv.URL))}, Cache: NewCache(100)})
	for tok, want := range map[string]string{"a_123": "from-a", "b_123": "from-b", "x.y.z.w.v": "from-b"} {
		id, err := v.Verify(context.Background(), tok)
		if err != nil || id.Subject != want {
			t.Fatalf("%s: %v, %v; want subject %s", tok, id, err, want)
		}
	}
	if a.calls.Load() != 1 || b.calls.Load() != 2 {
		t.Fatalf("calls a=%d b=%d; want 1 and 2", a.calls.Load(), b.calls.Load())
	}
	// JWS-shaped: never introspected; these issuers have no keys.
	if _, err := v.Verify(context.Background(), "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL2IuZXhhbXBsZS8ifQ.c2ln"); reasonOf(err) == "" || a.calls.Load()+b.calls.Load() != 3 {
		t.Fatalf("JWS: %v, calls %d; want a refusal and no call", err, a.calls.Load()+b.calls.Load())
	}
	// With only prefixed issuers, a token matching none is refused as before (not a JWS).
	only := NewVerifier(Options{Issuers: []Issuer{issuerOf(ca, nil, mk(ca, a.srv.URL))}})
	if _, err := only.Verify(context.Background(), "zz_123"); reasonOf(err) != contract.ReasonMalformed {
		t.Fatalf("unrouted token: %v; want malformed", err)
	}
	if _, err := only.Verify(context.Background(), "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL2EuZXhhbXBsZS8ifQ.c2ln"); reasonOf(err) != contract.ReasonUnsupportedToken {
		t.Fatalf("JWS to an introspection-only issuer: %v; want unsupported_token", err)
	}
}
