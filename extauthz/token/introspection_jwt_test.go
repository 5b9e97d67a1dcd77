package token

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/scopegate/scopegate/extauthz/introspect"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// RFC 9701: with jwt_response, the answer must be a JWT signed by one of the issuer's keys,
// typ token-introspection+jwt, iss the issuer, aud scopegate's client; anything else is the
// IdP's failure (503), never a client's 401.
func TestIntrospectionJWTResponse(t *testing.T) {
	k := testissuer.NewKey("k1", "ES256")
	stranger := testissuer.NewKey("k9", "ES256")
	is := testissuer.New(k)
	t.Cleanup(is.Close)

	var mu sync.Mutex
	var answer func() (contentType, body string)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != introspect.JWTMediaType {
			http.Error(w, "want a JWT response request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		ct, body := answer()
		mu.Unlock()
		w.Header().Set("Content-Type", ct)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(idp.Close)

	f := newFixture(t, is, nil)
	cfg := f.cfg
	cfg.Introspection = introIssuer("test", idp.URL).Introspection
	cfg.Introspection.JWTResponse = true
	c, err := introspect.New(introspect.Options{Name: "test", Issuer: cfg.Issuer, Endpoint: idp.URL, ClientID: "scopegate",
		ClientSecret: "s3cret", JWTResponse: true})
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(Options{Issuers: []Issuer{issuerOf(cfg, f.src, c)}})

	ti := func(active bool) map[string]any {
		return map[string]any{"active": active, "scope": "orders:read", "sub": "svc", "client_id": "batch",
			"exp": time.Now().Add(time.Hour).Unix(), "aud": []string{aud}}
	}
	signed := func(key *testissuer.Key, typ string, edit func(testissuer.Claims)) func() (string, string) {
		return func() (string, string) {
			c := testissuer.Claims{"iss": is.Issuer, "aud": "scopegate", "iat": time.Now().Unix(), "token_introspection": ti(true)}
			if edit != nil {
				edit(c)
			}
			return introspect.JWTMediaType, testissuer.Sign(key, c, map[string]any{"typ": typ})
		}
	}
	tests := []struct {
		name   string
		answer func() (string, string)
		reason string
	}{
		{"signed and valid", signed(k, "token-introspection+jwt", nil), ""},
		{"media type typ accepted", signed(k, "application/token-introspection+jwt", nil), ""},
		{"signed, inactive", signed(k, "token-introspection+jwt", func(c testissuer.Claims) { c["token_introspection"] = ti(false) }), contract.ReasonInactive},
		{"unsigned JSON refused", func() (string, string) { return "application/json", `{"active":true,"exp":4000000000}` }, contract.ReasonIntrospectionUnavailable},
		{"an access token's typ", signed(k, "at+jwt", nil), contract.ReasonIntrospectionUnavailable},
		{"signed by a stranger", signed(stranger, "token-introspection+jwt", nil), contract.ReasonIntrospectionUnavailable},
		{"another issuer", signed(k, "token-introspection+jwt", func(c testissuer.Claims) { c["iss"] = "https://evil.example" }), contract.ReasonIntrospectionUnavailable},
		{"for another client", signed(k, "token-introspection+jwt", func(c testissuer.Claims) { c["aud"] = "someone-else" }), contract.ReasonIntrospectionUnavailable},
		{"no iat", signed(k, "token-introspection+jwt", func(c testissuer.Claims) { delete(c, "iat") }), contract.ReasonIntrospectionUnavailable},
		{"no token_introspection", signed(k, "token-introspection+jwt", func(c testissuer.Claims) { delete(c, "token_introspection") }), contract.ReasonIntrospectionUnavailable},
		{"not a JWT", func() (string, string) { return introspect.JWTMediaType, "a.b" }, contract.ReasonIntrospectionUnavailable},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			answer = tt.answer
			mu.Unlock()
			id, err := v.Verify(context.Background(), fmt.Sprintf("opaque-%d", i))
			if got := reasonOf(err); got != tt.reason {
				t.Fatalf("reason = %q (%v), want %q", got, err, tt.reason)
			}
			if err == nil && (id.Subject != "svc" || id.ScopeString != "orders:read" || id.Source != SourceIntrospection) {
				t.Fatalf("identity = %+v", id)
			}
		})
	}
}

// introspect_jws: a JWS the issuer's keys can't verify goes to introspection; a JWS they
// verify never does; without the option the JWS is refused and the IdP never sees it.
func TestIntrospectJWS(t *testing.T) {
	k, stranger := testissuer.NewKey("k1", "ES256"), testissuer.NewKey("k9", "ES256")
	is := testissuer.New(k)
	t.Cleanup(is.Close)
	idp := newFakeIdP(t)
	idp.always(200, fmt.Sprintf(`{"active":true,"sub":"from-idp","scope":"orders:read","aud":%q,"exp":%d}`, aud, time.Now().Add(time.Hour).Unix()))
	f := newFixture(t, is, nil)
	mk := func(on bool) *Verifier {
		cfg := f.cfg
		cfg.Introspection = introIssuer("test", idp.srv.URL).Introspection
		cfg.Introspection.IntrospectJWS = on
		c, err := introspect.New(introspect.Options{Name: "test", Issuer: cfg.Issuer, Endpoint: idp.srv.URL, ClientID: "scopegate", ClientSecret: "s3cret"})
		if err != nil {
			t.Fatal(err)
		}
		return NewVerifier(Options{Issuers: []Issuer{issuerOf(cfg, f.src, c)}, Cache: NewCache(100)})
	}
	unverifiable := testissuer.Sign(stranger, is.Standard(aud, "alice", "orders:read", time.Hour), nil)
	good := testissuer.Sign(k, is.Standard(aud, "alice", "orders:read", time.Hour), nil)

	off := mk(false)
	if _, err := off.Verify(context.Background(), unverifiable); reasonOf(err) != contract.ReasonUnknownKID || idp.calls.Load() != 0 {
		t.Fatalf("off: %v, %d calls; want unknown_kid and no call", err, idp.calls.Load())
	}
	on := mk(true)
	if id, err := on.Verify(context.Background(), good); err != nil || id.Source != SourceJWT || idp.calls.Load() != 0 {
		t.Fatalf("verifiable JWS: %v, %v, %d calls; want a local verification", id, err, idp.calls.Load())
	}
	id, err := on.Verify(context.Background(), unverifiable)
	if err != nil || id.Source != SourceIntrospection || id.Subject != "from-idp" || idp.calls.Load() != 1 {
		t.Fatalf("unverifiable JWS: %+v, %v, %d calls; want the IdP's answer", id, err, idp.calls.Load())
	}
	if again, err := on.Verify(context.Background(), unverifiable); err != nil || again != id || idp.calls.Load() != 1 {
		t.Fatalf("again: %v, %d calls; want the cached answer", err, idp.calls.Load())
	}
}

// introspect_jws falls back only when the keys can't verify the JWS; a JWS that fails a local
// check (another audience, an ID token where require_typ wants at+jwt, another issuer,
// expired, a bad cnf, an algorithm off the list) is refused for that, whatever the IdP would
// answer: the answer may omit aud or token_type, and must not stand in for those checks.
func TestIntrospectJWSOnlyOnKeyFailures(t *testing.T) {
	k, stranger := testissuer.NewKey("k1", "ES256"), testissuer.NewKey("k9", "ES256")
	impostor := testissuer.NewKey("k1", "ES256") // the issuer's kid, another key: a bad signature
	is := testissuer.New(k)
	t.Cleanup(is.Close)
	idp := newFakeIdP(t)
	// The answer a lax IdP gives: active, no aud, no token_type.
	idp.always(200, fmt.Sprintf(`{"active":true,"sub":"from-idp","scope":"orders:read","exp":%d}`, time.Now().Add(time.Hour).Unix()))
	f := newFixture(t, is, nil)
	cfg := f.cfg
	cfg.RequireTyp = "at+jwt"
	cfg.Introspection = introIssuer("test", idp.srv.URL).Introspection
	cfg.Introspection.IntrospectJWS = true
	cfg.Introspection.AllowMissingAudience = true // the lax IdP above: its answers carry no aud
	c, err := introspect.New(introspect.Options{Name: "test", Issuer: cfg.Issuer, Endpoint: idp.srv.URL, ClientID: "scopegate", ClientSecret: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(Options{Issuers: []Issuer{issuerOf(cfg, f.src, c)}, Cache: NewCache(100)})
	at := map[string]any{"typ": "at+jwt"}
	claims := func(edit func(testissuer.Claims)) testissuer.Claims {
		c := is.Standard(aud, "alice", "orders:read", time.Hour)
		if edit != nil {
			edit(c)
		}
		return c
	}
	tests := []struct {
		name, tok, reason string
		introspected      bool
	}{
		{"unknown kid", testissuer.Sign(stranger, claims(nil), at), "", true},
		{"bad signature", testissuer.Sign(impostor, claims(nil), at), "", true},
		{"another audience", testissuer.Sign(stranger, claims(func(c testissuer.Claims) { c["aud"] = "billing-api" }), at), contract.ReasonWrongAudience, false},
		{"an ID token", testissuer.Sign(stranger, claims(nil), map[string]any{"typ": "JWT"}), contract.ReasonWrongTyp, false},
		{"another issuer's", testissuer.Sign(stranger, claims(func(c testissuer.Claims) { c["iss"] = "https://evil.example/" }), at), contract.ReasonUnknownIssuer, false},
		{"expired", testissuer.Sign(stranger, claims(func(c testissuer.Claims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), at), contract.ReasonExpired, false},
		{"no exp", testissuer.Sign(stranger, claims(func(c testissuer.Claims) { delete(c, "exp") }), at), contract.ReasonMissingExp, false},
		{"unsupported cnf", testissuer.Sign(stranger, claims(func(c testissuer.Claims) { c["cnf"] = map[string]any{"kid": "x"} }), at), contract.ReasonMalformed, false},
		{"critical header", testissuer.Sign(stranger, claims(nil), map[string]any{"typ": "at+jwt", "crit": []string{"x"}, "x": 1}), contract.ReasonUnsupportedCrit, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := idp.calls.Load()
			id, err := v.Verify(context.Background(), tt.tok)
			if got := reasonOf(err); got != tt.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tt.reason)
			}
			if called := idp.calls.Load() > before; called != tt.introspected {
				t.Fatalf("introspected: %v, want %v", called, tt.introspected)
			}
			if err == nil && id.Source != SourceIntrospection {
				t.Fatalf("source %q", id.Source)
			}
		})
	}
}
