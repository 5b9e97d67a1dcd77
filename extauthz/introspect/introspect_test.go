package introspect

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestParse(t *testing.T) {
	r, err := Parse([]byte(`{"active":true,"scope":"a b","aud":"api","exp":1800000000.0,"iat":1,"nbf":2,"sub":"s","client_id":"c","iss":"i","jti":"j","token_type":"Bearer","cnf":{"jkt":"x"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Active || r.Scope != "a b" || len(r.Aud) != 1 || r.Aud[0] != "api" || r.Exp != 1800000000 || r.Iat != 1 || r.Nbf != 2 ||
		r.Sub != "s" || r.ClientID != "c" || r.Iss != "i" || r.JTI != "j" || r.TokenType != "Bearer" || !strings.Contains(string(r.Raw), `"cnf"`) || r.JKT != "x" {
		t.Fatalf("parsed %+v", r)
	}
	// Members of an inactive answer are not read (RFC 7662 §2.2), so their types don't matter.
	if r, err := Parse([]byte(`{"active":false,"scope":5}`)); err != nil || r.Active {
		t.Fatalf("inactive: %+v %v", r, err)
	}
	for name, body := range map[string]string{
		"not JSON": `{`, "array": `[]`, "null": `null`, "no active": `{}`, "active string": `{"active":"true"}`,
		"active number": `{"active":1}`, "scope number": `{"active":true,"scope":1}`, "exp string": `{"active":true,"exp":"1"}`,
		"aud object": `{"active":true,"aud":{}}`, "aud mixed": `{"active":true,"aud":["a",1]}`, "duplicate": `{"active":true,"scope":"a","scope":"b"}`,
		"sub number": `{"active":true,"sub":7}`,
		"cnf string": `{"active":true,"cnf":"x"}`, "cnf.jkt number": `{"active":true,"cnf":{"jkt":1}}`, "cnf.jkt empty": `{"active":true,"cnf":{"jkt":""}}`,
	} {
		if _, err := Parse([]byte(body)); err == nil {
			t.Errorf("%s: %s parsed", name, body)
		}
	}
}

// Discovery finds introspection_endpoint, and refuses a document naming another issuer.
func TestDiscovery(t *testing.T) {
	var issuer string
	docIssuer := func() string { return issuer }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": docIssuer(), "introspection_endpoint": docIssuer() + "oauth/introspect"})
	}))
	defer srv.Close()
	issuer = srv.URL + "/"
	c, err := New(Options{Name: "corp", Issuer: issuer, Discovery: true, ClientID: "a", ClientSecret: "b", RetryMin: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Introspect(context.Background(), "tok"); !errors.Is(err, ErrUnavailable) || c.Ready() {
		t.Fatalf("before discovery: %v, ready %v", err, c.Ready())
	}
	ep, err := c.discover(context.Background())
	if err != nil || ep != srv.URL+"/oauth/introspect" {
		t.Fatalf("discover = %q, %v", ep, err)
	}
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": "https://evil.example/", "introspection_endpoint": "https://evil.example/introspect"})
	}))
	defer evil.Close()
	other, _ := New(Options{Name: "corp", Issuer: evil.URL + "/", Discovery: true})
	if _, err := other.discover(context.Background()); err == nil || !strings.Contains(err.Error(), "is not the configured") {
		t.Fatalf("issuer mismatch: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.Start(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for !c.Ready() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // Start runs in the background and signals nothing else
	}
	if c.Endpoint() != srv.URL+"/oauth/introspect" {
		t.Fatalf("after Start: endpoint %q", c.Endpoint())
	}
}

// Client authentication is client_secret_basic with form-encoded parts (RFC 6749 §2.3.1); the
// token travels in the body only and never appears in an error.
func TestCallAndErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, _ := r.BasicAuth()
		if id != "api%3Aclient" || secret != "s+cret%2F" || r.URL.RawQuery != "" || r.FormValue("token") != "the-token" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"active":true,"exp":1}`))
	}))
	defer srv.Close()
	c, _ := New(Options{Name: "corp", Endpoint: srv.URL, ClientID: "api:client", ClientSecret: "s cret/"})
	if r, err := c.Introspect(context.Background(), "the-token"); err != nil || !r.Active {
		t.Fatalf("call: %+v %v", r, err)
	}
	_, err := c.Introspect(context.Background(), "other-token")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "status 401") || strings.Contains(err.Error(), "other-token") {
		t.Fatalf("refused call: %v", err)
	}
	srv.Close()
	if _, err := c.Introspect(context.Background(), "the-token"); !errors.Is(err, ErrUnavailable) || strings.Contains(err.Error(), "the-token") {
		t.Fatalf("server down: %v", err)
	}
}

// private_key_jwt (RFC 7523): a fresh assertion per call, signed with the client's key, iss and
// sub the client, aud the endpoint, short-lived, with a jti; no Authorization header.
func TestPrivateKeyJWT(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for name, key := range map[string]crypto.Signer{"ES256": ec, "RS256": rk, "EdDSA": ed} {
		t.Run(name, func(t *testing.T) {
			var jtis []string
			var srvURL string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "" || r.FormValue("client_id") != "orders-api" ||
					r.FormValue("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
					http.Error(w, "bad client authentication", http.StatusUnauthorized)
					return
				}
				var claims jwt.RegisteredClaims
				tok, err := jwt.ParseWithClaims(r.FormValue("client_assertion"), &claims, func(*jwt.Token) (any, error) { return key.Public(), nil },
					jwt.WithValidMethods([]string{name}), jwt.WithAudience(srvURL), jwt.WithIssuer("orders-api"), jwt.WithExpirationRequired())
				if err != nil || claims.Subject != "orders-api" || claims.ID == "" || tok.Header["kid"] != "k-1" ||
					claims.ExpiresAt.Sub(claims.IssuedAt.Time) > time.Minute {
					http.Error(w, fmt.Sprint("bad assertion: ", err), http.StatusUnauthorized)
					return
				}
				jtis = append(jtis, claims.ID)
				_, _ = w.Write([]byte(`{"active":true,"exp":1}`))
			}))
			defer srv.Close()
			srvURL = srv.URL
			c, err := New(Options{Name: "corp", Endpoint: srv.URL, ClientID: "orders-api", ClientKey: key, KeyID: "k-1"})
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if r, err := c.Introspect(context.Background(), "tok"); err != nil || !r.Active {
					t.Fatalf("call: %+v %v", r, err)
				}
			}
			if len(jtis) != 2 || jtis[0] == jtis[1] {
				t.Fatalf("jtis %v: want a fresh assertion per call", jtis)
			}
		})
	}
}
