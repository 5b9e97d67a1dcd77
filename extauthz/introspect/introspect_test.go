package introspect

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	r, err := Parse([]byte(`{"active":true,"scope":"a b","aud":"api","exp":1800000000.0,"iat":1,"nbf":2,"sub":"s","client_id":"c","iss":"i","jti":"j","token_type":"Bearer","cnf":{"jkt":"x"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Active || r.Scope != "a b" || len(r.Aud) != 1 || r.Aud[0] != "api" || r.Exp != 1800000000 || r.Iat != 1 || r.Nbf != 2 ||
		r.Sub != "s" || r.ClientID != "c" || r.Iss != "i" || r.JTI != "j" || r.TokenType != "Bearer" || !strings.Contains(string(r.Raw), `"cnf"`) {
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
