package token

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/extauthz/introspect"
	"github.com/scopegate/scopegate/extauthz/jwks"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

const aud = "orders-api"

type fixture struct {
	is  *testissuer.Issuer
	src *jwks.Source
	v   *Verifier
	cfg config.Issuer
}

func issuerConfig(is *testissuer.Issuer) config.Issuer {
	return config.Issuer{
		Name: "test", Issuer: is.Issuer, JWKSURI: is.JWKSURL(), Audiences: []string{aud},
		Algorithms: config.DefaultAlgorithms, ScopeClaims: []string{"scope", "scp"},
		ClientIDClaims: []string{"client_id", "azp"}, Leeway: 5 * time.Second,
		RefreshInterval: time.Hour, UnknownKIDInterval: time.Millisecond, FetchTimeout: 2 * time.Second, MaxJWKSBytes: 64 << 10,
	}
}

// issuerOf is what the wiring (extauthz/server, which imports this package) makes of an
// issuer's config: the verifier's own Issuer.
func issuerOf(c config.Issuer, keys *jwks.Source, intro *introspect.Client) Issuer {
	is := Issuer{Name: c.Name, Issuer: c.Issuer, Audiences: c.Audiences, Algorithms: c.Algorithms,
		ScopeClaims: c.ScopeClaims, ClientIDClaims: c.ClientIDClaims, RequireTyp: c.RequireTyp, Leeway: c.Leeway,
		FetchTimeout: c.FetchTimeout, RequireBinding: c.RequireBinding, Keys: keys, Introspect: intro}
	if in := c.Introspection; in != nil {
		is.Introspection = &Introspection{ClientID: in.ClientID, TokenPrefix: in.TokenPrefix, IntrospectJWS: in.IntrospectJWS,
			AllowMissingAudience: in.AllowMissingAudience, CacheTTL: in.CacheTTL, NegativeCacheTTL: in.NegativeCacheTTL}
	}
	return is
}

// newFixture starts the key source and waits (on its change signal) until it has keys, unless
// the issuer is down.
func newFixture(t testing.TB, is *testissuer.Issuer, edit func(*config.Issuer), opts ...func(*jwks.Options)) *fixture {
	t.Helper()
	cfg := issuerConfig(is)
	if edit != nil {
		edit(&cfg)
	}
	o := jwks.Options{
		Name: cfg.Name, Issuer: cfg.Issuer, Discovery: cfg.Discovery, URL: cfg.JWKSURI, File: cfg.JWKSFile,
		RefreshInterval: cfg.RefreshInterval, UnknownKIDInterval: cfg.UnknownKIDInterval,
		FetchTimeout: cfg.FetchTimeout, MaxBytes: cfg.MaxJWKSBytes, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond,
	}
	for _, f := range opts {
		f(&o)
	}
	src, err := jwks.New(o)
	if err != nil {
		t.Fatal(err)
	}
	changed := src.Changed()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	src.Start(ctx)
	if o.File == "" {
		select {
		case <-changed:
		case <-time.After(5 * time.Second):
			t.Fatal("no key set within 5s")
		}
	}
	v := NewVerifier(Options{Issuers: []Issuer{issuerOf(cfg, src, nil)}, Cache: NewCache(1000)})
	return &fixture{is: is, src: src, v: v, cfg: cfg}
}

func reasonOf(err error) string {
	var e *denial.Denial
	if errors.As(err, &e) {
		return e.Reason
	}
	if err == nil {
		return ""
	}
	return "not a token error: " + err.Error()
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestVerifyAttacks(t *testing.T) {
	rsaKey := testissuer.NewKey("rsa-1", "RS256")
	ecKey := testissuer.NewKey("ec-1", "ES256")
	edKey := testissuer.NewKey("ed-1", "EdDSA")
	is := testissuer.New(rsaKey, ecKey, edKey)
	defer is.Close()
	f := newFixture(t, is, func(c *config.Issuer) { c.RequireTyp = "at+jwt" })
	good := func() testissuer.Claims { return is.Standard(aud, "alice", "orders:read", time.Minute) }
	with := func(edit func(testissuer.Claims)) testissuer.Claims { c := good(); edit(c); return c }

	pubDER, _ := x509.MarshalPKIXPublicKey(rsaKey.Private.Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hsConfused := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, good())
		tok.Header["kid"] = "rsa-1"
		tok.Header["typ"] = "at+jwt"
		s, err := tok.SignedString(pubPEM)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	valid := testissuer.Sign(rsaKey, good(), nil)
	parts := strings.Split(valid, ".")
	rsaTokenWithECKid := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, good())
		tok.Header["kid"] = "ec-1"
		tok.Header["typ"] = "at+jwt"
		s, _ := tok.SignedString(rsaKey.Private)
		return s
	}()
	otherKey := testissuer.NewKey("rsa-1", "RS256") // same kid, different key: a forgery

	tests := []struct {
		name, token, reason string
	}{
		{"valid RS256", valid, ""},
		{"valid ES256", testissuer.Sign(ecKey, good(), nil), ""},
		{"valid EdDSA", testissuer.Sign(edKey, good(), nil), ""},
		{"typ with application/ prefix", testissuer.Sign(rsaKey, good(), map[string]any{"typ": "application/at+JWT"}), ""},
		{"alg none", b64(`{"alg":"none","typ":"at+jwt","kid":"rsa-1"}`) + "." + parts[1] + ".", "alg_not_allowed"},
		{"alg none without kid", b64(`{"alg":"none"}`) + "." + parts[1] + ".", "alg_not_allowed"},
		{"HS256 with the RSA public key as secret", hsConfused, "alg_not_allowed"},
		{"unknown alg", b64(`{"alg":"XX999","kid":"rsa-1"}`) + "." + parts[1] + "." + parts[2], "alg_not_allowed"},
		{"RS256 token naming an EC key", rsaTokenWithECKid, "key_mismatch"},
		{"signed by another key with a known kid", testissuer.Sign(otherKey, good(), nil), "bad_signature"},
		{"signature stripped", parts[0] + "." + parts[1] + ".", "bad_signature"},
		{"payload altered", parts[0] + "." + b64(strings.Replace(string(mustDecode(t, parts[1])), "alice", "admin", 1)) + "." + parts[2], "bad_signature"},
		{"wrong iss", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { c["iss"] = "https://evil.example" }), nil), "unknown_issuer"},
		{"iss with trailing slash", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { c["iss"] = is.Issuer + "/" }), nil), "unknown_issuer"},
		{"no iss", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { delete(c, "iss") }), nil), "unknown_issuer"},
		{"iss not a string", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { c["iss"] = 7 }), nil), "malformed"},
		{"wrong aud", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { c["aud"] = "billing-api" }), nil), "wrong_audience"},
		{"aud list containing ours", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { c["aud"] = []string{"x", aud} }), nil), ""},
		{"no aud", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { delete(c, "aud") }), nil), "missing_claim"},
		{"no exp", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { delete(c, "exp") }), nil), "missing_exp"},
		{"expired", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), nil), "expired"},
		{"expired within leeway", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { c["exp"] = time.Now().Add(-2 * time.Second).Unix() }), nil), ""},
		{"nbf in the future", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { c["nbf"] = time.Now().Add(time.Minute).Unix() }), nil), "not_yet_valid"},
		{"iat in the future", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { c["iat"] = time.Now().Add(time.Minute).Unix() }), nil), "issued_in_future"},
		{"ID token where at+jwt is required", testissuer.Sign(rsaKey, good(), map[string]any{"typ": "JWT"}), "wrong_typ"},
		{"no typ where at+jwt is required", testissuer.Sign(rsaKey, good(), map[string]any{"typ": nil}), "wrong_typ"},
		{"crit header", testissuer.Sign(rsaKey, good(), map[string]any{"crit": []string{"exp"}, "exp": 1}), "unsupported_crit"},
		{"jku header is not followed", testissuer.Sign(otherKey, good(), map[string]any{"jku": "http://127.0.0.1:1/keys", "kid": "nope"}), "unknown_kid"},
		{"unknown kid", testissuer.Sign(testissuer.NewKey("nope", "ES256"), good(), nil), "unknown_kid"},
		{"kid not a string", testissuer.Sign(rsaKey, good(), map[string]any{"kid": 5}), "malformed"},
		{"5-part JWE", "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d", "unsupported_token"},
		{"two parts", parts[0] + "." + parts[1], "malformed"},
		{"invalid base64 payload", parts[0] + ".!!!." + parts[2], "malformed"},
		{"invalid base64 header", "!!!." + parts[1] + "." + parts[2], "malformed"},
		{"non-JSON header", b64("not json") + "." + parts[1] + "." + parts[2], "malformed"},
		{"non-JSON payload", parts[0] + "." + b64("[1,2") + "." + parts[2], "malformed"},
		// A configured scope claim of the wrong type is a malformed token, not "no scopes".
		{"scope a number", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { c["scope"] = 12345 }), nil), "malformed"},
		{"scope an object", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { c["scope"] = map[string]any{"a": "b"} }), nil), "malformed"},
		{"scp holding a non-string", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { c["scp"] = []any{"orders:read", 7} }), nil), "malformed"},
		{"scope null", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { c["scope"] = nil }), nil), "malformed"},
		{"scp a list of strings", testissuer.Sign(rsaKey, with(func(c testissuer.Claims) { c["scp"] = []string{"a", "b"} }), nil), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := f.v.Verify(context.Background(), tt.token)
			if got := reasonOf(err); got != tt.reason {
				t.Fatalf("reason = %q, want %q (err %v)", got, tt.reason, err)
			}
			if tt.reason == "" && (id == nil || id.Subject != "alice" || id.Issuer != "test") {
				t.Fatalf("identity = %+v", id)
			}
			if err != nil && strings.Contains(err.Error(), tt.token) {
				t.Fatal("error echoes the token")
			}
			if strings.HasPrefix(tt.name, "sc") && tt.reason != "" && !strings.Contains(err.Error(), `claim is not a space-delimited string or an array of strings`) {
				t.Fatalf("error %q should name the scope claim", err)
			}
		})
	}
}

func mustDecode(t *testing.T, s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIdentityClaims(t *testing.T) {
	k := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k)
	defer is.Close()
	f := newFixture(t, is, func(c *config.Issuer) { c.ScopeClaims = []string{"scope", "scp", "roles"} })
	c := is.Standard(aud, "alice", "orders:read  orders:write", time.Minute)
	c["scp"] = []string{"orders:write", "admin"}
	c["roles"] = "ops"
	delete(c, "client_id")
	c["azp"] = "cli"
	id, err := f.v.Verify(context.Background(), testissuer.Sign(k, c, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(id.Scopes, ","), "orders:read,orders:write,admin,ops"; got != want {
		t.Errorf("scopes = %s, want %s", got, want)
	}
	if id.ScopeString != "orders:read orders:write admin ops" || id.ClientID != "cli" || id.KID != "k1" ||
		id.Iss != is.Issuer || len(id.Audience) != 1 || id.JTI == "" || id.ExpiresAt.IsZero() || id.IssuedAt.IsZero() {
		t.Errorf("identity = %+v", id)
	}
}

func TestCache(t *testing.T) {
	k1, k2 := testissuer.NewKey("k1", "RS256"), testissuer.NewKey("k2", "RS256")
	is := testissuer.New(k1, k2)
	defer is.Close()
	f := newFixture(t, is, nil)
	tok := testissuer.Sign(k1, is.Standard(aud, "alice", "a", time.Minute), nil)
	first, err := f.v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.v.Verify(context.Background(), tok)
	if err != nil || second != first {
		t.Fatalf("second Verify = %p, %v; want the cached %p", second, err, first)
	}
	if f.v.cache.Len() != 1 {
		t.Fatalf("cache size %d", f.v.cache.Len())
	}

	// The entry never outlives exp, even though leeway would still accept it at verification.
	now := time.Now()
	f.v.now = func() time.Time { return now.Add(61 * time.Second) }
	if _, err := f.v.Verify(context.Background(), tok); reasonOf(err) != "" {
		// exp+1s is within the 5s leeway: verified again, not served from a dead entry.
		t.Fatalf("within leeway: %v", err)
	}
	f.v.now = func() time.Time { return now.Add(2 * time.Minute) }
	if _, err := f.v.Verify(context.Background(), tok); reasonOf(err) != "expired" {
		t.Fatalf("after exp: %v", err)
	}
	f.v.now = time.Now

	// A cached token stops verifying once its key leaves the JWKS.
	if _, err := f.v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	changed := f.src.Changed()
	is.SetKeys(k2)
	// A token with an unknown kid makes the source refresh now.
	if _, err := f.v.Verify(context.Background(), testissuer.Sign(testissuer.NewKey("k3", "RS256"), is.Standard(aud, "x", "", time.Minute), nil)); reasonOf(err) != "unknown_kid" {
		t.Fatalf("k3: %v", err)
	}
	<-changed
	if _, err := f.v.Verify(context.Background(), tok); reasonOf(err) != "unknown_kid" {
		t.Fatalf("token of a removed key: %v", err)
	}
}

func TestCacheBounded(t *testing.T) {
	c := NewCache(128)
	now := time.Now().UnixNano()
	for i := 0; i < 1000; i++ {
		var k [32]byte
		k[0], k[1], k[2] = byte(i), byte(i>>8), 1
		c.put(&k, &entry{expiry: now + int64(time.Hour)}, now)
	}
	if c.Len() > 128 {
		t.Fatalf("cache holds %d entries, bound is 128", c.Len())
	}
	c.sweep(now + int64(2*time.Hour))
	if c.Len() != 0 {
		t.Fatalf("after sweep: %d", c.Len())
	}
}

func TestKeyRotationAndOutage(t *testing.T) {
	k1 := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k1)
	defer is.Close()
	f := newFixture(t, is, nil)
	ctx := context.Background()

	// Rotation: a token signed with a key published after start verifies on its first Check.
	k2 := testissuer.NewKey("k2", "EdDSA")
	is.SetKeys(k1, k2)
	if _, err := f.v.Verify(ctx, testissuer.Sign(k2, is.Standard(aud, "a", "", time.Minute), nil)); err != nil {
		t.Fatalf("rotated-in key: %v", err)
	}

	// IdP down, junk, empty or huge later: the last good key set stays.
	for _, mode := range []testissuer.Mode{testissuer.Down, testissuer.Junk, testissuer.Empty, testissuer.Huge} {
		is.SetMode(mode)
		before := is.Requests()
		_, err := f.v.Verify(ctx, testissuer.Sign(testissuer.NewKey("k9", "ES256"), is.Standard(aud, "a", "", time.Minute), nil))
		if reasonOf(err) != "unknown_kid" {
			t.Fatalf("mode %d: unknown kid: %v", mode, err)
		}
		// The refresh may be held back by the previous failure's back-off: the Check is
		// answered at once, and the fetch it asked for runs as soon as it may.
		for guard := time.Now().Add(5 * time.Second); is.Requests() == before; time.Sleep(time.Millisecond) {
			if time.Now().After(guard) {
				t.Fatalf("mode %d: no refresh was attempted", mode)
			}
		}
		if _, err := f.v.Verify(ctx, testissuer.Sign(k1, is.Standard(aud, "a", "", time.Minute), nil)); err != nil {
			t.Fatalf("mode %d: known key stopped verifying: %v", mode, err)
		}
		if got := f.src.Current().Len(); got != 2 {
			t.Fatalf("mode %d: %d keys, want the 2 last good", mode, got)
		}
	}
}

func TestUnknownKIDMissesShareOneRefresh(t *testing.T) {
	k1 := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k1)
	defer is.Close()
	f := newFixture(t, is, func(c *config.Issuer) { c.UnknownKIDInterval = time.Hour })
	before := is.Requests()
	tok := testissuer.Sign(testissuer.NewKey("ghost", "ES256"), is.Standard(aud, "a", "", time.Minute), nil)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = f.v.Verify(context.Background(), tok)
		}()
	}
	wg.Wait()
	// Another burst of made-up kids within the interval costs nothing more.
	for i := 0; i < 5; i++ {
		_, _ = f.v.Verify(context.Background(), testissuer.Sign(testissuer.NewKey("ghost2", "ES256"), is.Standard(aud, "a", "", time.Minute), nil))
	}
	if got := is.Requests() - before; got != 1 {
		t.Fatalf("%d JWKS requests for concurrent misses, want 1", got)
	}
}

func TestUnknownKIDRespectsCallerDeadline(t *testing.T) {
	k1 := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k1)
	defer is.Close()
	f := newFixture(t, is, func(c *config.Issuer) { c.UnknownKIDInterval = time.Hour })
	// Use up the limiter's one token, so the next miss would have to wait an hour.
	_, _ = f.v.Verify(context.Background(), testissuer.Sign(testissuer.NewKey("g1", "ES256"), is.Standard(aud, "a", "", time.Minute), nil))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond+jwks.DeadlineMargin)
	defer cancel()
	start := time.Now()
	_, err := f.v.Verify(ctx, testissuer.Sign(testissuer.NewKey("g2", "ES256"), is.Standard(aud, "a", "", time.Minute), nil))
	if reasonOf(err) != "unknown_kid" {
		t.Fatalf("err = %v", err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("Verify waited %s past its deadline", waited)
	}
}

func TestIdPDownAtStart(t *testing.T) {
	k1 := testissuer.NewKey("k1", "RS256")
	is := testissuer.New(k1)
	defer is.Close()
	is.SetMode(testissuer.Down)
	cfg := issuerConfig(is)
	src, err := jwks.New(jwks.Options{Name: "test", Issuer: cfg.Issuer, URL: cfg.JWKSURI, RefreshInterval: time.Hour,
		UnknownKIDInterval: time.Millisecond, FetchTimeout: time.Second, MaxBytes: 1 << 16, RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	changed := src.Changed()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src.Start(ctx)
	v := NewVerifier(Options{Issuers: []Issuer{issuerOf(cfg, src, nil)}})
	tok := testissuer.Sign(k1, is.Standard(aud, "a", "", time.Minute), nil)
	_, err = v.Verify(ctx, tok)
	var e *denial.Denial
	if !errors.As(err, &e) || e.Kind != denial.Unavailable || e.Reason != "no_keys" {
		t.Fatalf("IdP down at start: %v, want an Unavailable no_keys", err)
	}
	if src.Ready() {
		t.Fatal("ready without keys")
	}
	is.SetMode(testissuer.Serving)
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("keys never arrived after the IdP came back")
	}
	if !src.Ready() {
		t.Fatal("not ready with keys")
	}
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
}

func TestDiscoveryAndFile(t *testing.T) {
	k := testissuer.NewKey("k1", "PS256")
	is := testissuer.New(k)
	defer is.Close()
	f := newFixture(t, is, func(c *config.Issuer) { c.Discovery, c.JWKSURI = true, "" })
	if _, err := f.v.Verify(context.Background(), testissuer.Sign(k, is.Standard(aud, "a", "", time.Minute), nil)); err != nil {
		t.Fatalf("discovery: %v", err)
	}

	path := t.TempDir() + "/jwks.json"
	if err := writeFile(path, testissuer.JWKS(k)); err != nil {
		t.Fatal(err)
	}
	ff := newFixture(t, is, func(c *config.Issuer) { c.JWKSURI, c.JWKSFile = "", path })
	if _, err := ff.v.Verify(context.Background(), testissuer.Sign(k, is.Standard(aud, "a", "", time.Minute), nil)); err != nil {
		t.Fatalf("jwks_file: %v", err)
	}
}

// With several issuers the unverified iss picks the keys: a token must verify with its own
// issuer's keys, never another's.
func TestTwoIssuers(t *testing.T) {
	ka, kb := testissuer.NewKey("a1", "ES256"), testissuer.NewKey("b1", "RS256")
	a, b := testissuer.New(ka), testissuer.New(kb)
	defer a.Close()
	defer b.Close()
	fa := newFixture(t, a, func(c *config.Issuer) { c.Name = "a" })
	fb := newFixture(t, b, func(c *config.Issuer) { c.Name = "b" })
	v := NewVerifier(Options{Issuers: []Issuer{issuerOf(fa.cfg, fa.src, nil), issuerOf(fb.cfg, fb.src, nil)}})
	ctx := context.Background()
	for _, tt := range []struct {
		name, token, reason, issuer string
	}{
		{"issuer a", testissuer.Sign(ka, a.Standard(aud, "x", "", time.Minute), nil), "", "a"},
		{"issuer b", testissuer.Sign(kb, b.Standard(aud, "x", "", time.Minute), nil), "", "b"},
		{"b's iss signed with a's key", testissuer.Sign(ka, b.Standard(aud, "x", "", time.Minute), nil), "unknown_kid", ""},
		{"unknown iss", testissuer.Sign(ka, with(a.Standard(aud, "x", "", time.Minute), "iss", "https://other"), nil), "unknown_issuer", ""},
		{"no iss", testissuer.Sign(ka, with(a.Standard(aud, "x", "", time.Minute), "iss", nil), nil), "unknown_issuer", ""},
		{"iss not a string", testissuer.Sign(ka, with(a.Standard(aud, "x", "", time.Minute), "iss", 1), nil), "malformed", ""},
	} {
		id, err := v.Verify(ctx, tt.token)
		if got := reasonOf(err); got != tt.reason {
			t.Errorf("%s: reason %q, want %q", tt.name, got, tt.reason)
		}
		if tt.reason == "" && id.Issuer != tt.issuer {
			t.Errorf("%s: issuer %q, want %q", tt.name, id.Issuer, tt.issuer)
		}
	}
}

func with(c testissuer.Claims, name string, v any) testissuer.Claims {
	if v == nil {
		delete(c, name)
	} else {
		c[name] = v
	}
	return c
}

// A token without kid is verified by trying the issuer's keys; the key that verified it is
// recorded, so the token is cached and its entry dies with that key.
func TestNoKIDTokenCachedUnderItsKey(t *testing.T) {
	k1, k2 := testissuer.NewKey("k1", "RS256"), testissuer.NewKey("k2", "RS256")
	is := testissuer.New(k1, k2)
	defer is.Close()
	f := newFixture(t, is, nil)
	tok := testissuer.Sign(k2, is.Standard(aud, "alice", "a", time.Minute), map[string]any{"kid": nil})
	first, err := f.v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if first.KID != "k2" || f.v.cache.Len() != 1 {
		t.Fatalf("kid %q, %d cached; want k2 and 1", first.KID, f.v.cache.Len())
	}
	if again, err := f.v.Verify(context.Background(), tok); err != nil || again != first {
		t.Fatalf("second Verify = %p, %v; want the cached %p", again, err, first)
	}
	changed := f.src.Changed()
	is.SetKeys(k1)
	if _, err := f.v.Verify(context.Background(), testissuer.Sign(testissuer.NewKey("k3", "RS256"), is.Standard(aud, "x", "", time.Minute), nil)); reasonOf(err) != "unknown_kid" {
		t.Fatalf("k3: %v", err)
	}
	<-changed
	if _, err := f.v.Verify(context.Background(), tok); reasonOf(err) != "bad_signature" {
		t.Fatalf("after its key left the JWKS: %v, want bad_signature", err)
	}
}
