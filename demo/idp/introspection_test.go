package idp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/extauthz/introspect"
	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/contract"
)

// withOpaque registers the API itself as a client (it introspects) and a batch client that
// gets opaque access tokens.
func withOpaque(c *Config) {
	c.Clients = append(c.Clients,
		Client{ID: "orders-api", Secret: "orders-api-secret", GrantTypes: []string{GrantClientCredentials}},
		Client{ID: "batch-opaque", Secret: "batch-secret", Scopes: []string{"orders:read"},
			GrantTypes: []string{GrantClientCredentials}, AccessTokenFormat: TokenFormatOpaque})
}

func (ti *testIDP) introspect(t *testing.T, tok, user, pass string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, ti.srv.URL+PathIntrospect, strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	return resp.StatusCode, m
}

// The provider issues opaque (JWE-shaped) access tokens to a client configured for them and
// answers introspection of them, through the OAuth library's endpoint, to the API alone.
func TestOpaqueTokensAndIntrospection(t *testing.T) {
	ti := newTestIDP(t, withOpaque)
	tr := ti.token(t, ccForm("orders:read"), "batch-opaque", "batch-secret")
	if tr.Status != 200 || tr.AccessToken == "" {
		t.Fatalf("token: %+v", tr)
	}
	if n := strings.Count(tr.AccessToken, "."); n == 2 {
		t.Fatalf("the opaque token is JWS-shaped (%d dots)", n)
	}
	status, got := ti.introspect(t, tr.AccessToken, "orders-api", "orders-api-secret")
	if status != 200 || got["active"] != true || got["scope"] != "orders:read" || got["client_id"] != "batch-opaque" ||
		got["sub"] != "batch-opaque" || got["iss"] != testIssuer || got["token_type"] != "Bearer" || got["exp"] == nil {
		t.Fatalf("introspection by the API = %d %v", status, got)
	}
	if aud, _ := got["aud"].([]any); len(aud) != 1 || aud[0] != "orders-api" {
		t.Fatalf("aud = %v, want [orders-api]", got["aud"])
	}
	// Another client learns nothing; a wrong secret is refused; a made-up token is inactive.
	if status, got := ti.introspect(t, tr.AccessToken, "reporting-job", "reporting-secret"); status != 200 || got["active"] != false || len(got) != 1 {
		t.Fatalf("introspection by another client = %d %v; want only active: false", status, got)
	}
	if status, _ := ti.introspect(t, tr.AccessToken, "orders-api", "wrong"); status < 400 {
		t.Fatalf("wrong secret: status %d", status)
	}
	if _, got := ti.introspect(t, tr.AccessToken[:len(tr.AccessToken)-4]+"AAAA", "orders-api", "orders-api-secret"); got["active"] != false {
		t.Fatalf("tampered token: %v", got)
	}
	// A JWT client still gets JWTs.
	if jwt := ti.token(t, ccForm("orders:read"), "reporting-job", "reporting-secret"); strings.Count(jwt.AccessToken, ".") != 2 {
		t.Fatalf("JWT client got %q", jwt.AccessToken)
	}
	// Discovery names the endpoint and client_secret_basic.
	resp, err := http.Get(ti.srv.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Endpoint string   `json:"introspection_endpoint"`
		Methods  []string `json:"introspection_endpoint_auth_methods_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || d.Endpoint != testIssuer+PathIntrospect || strings.Join(d.Methods, ",") != "client_secret_basic" {
		t.Fatalf("discovery: %+v %v", d, err)
	}
	// Expired: inactive.
	ti.clock.Advance(DefaultAccessTokenLifetime + time.Second)
	if _, got := ti.introspect(t, tr.AccessToken, "orders-api", "orders-api-secret"); got["active"] != false {
		t.Fatalf("expired token: %v", got)
	}
}

// scopegate authz's verifier accepts the provider's opaque tokens through the provider's
// introspection endpoint, in-process, and refuses them once expired.
func TestVerifierIntrospectsDemoTokens(t *testing.T) {
	ti := newTestIDP(t, withOpaque)
	c, err := introspect.New(introspect.Options{Name: "demo", Issuer: testIssuer, Endpoint: ti.srv.URL + PathIntrospect,
		ClientID: "orders-api", ClientSecret: "orders-api-secret", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ti2 := token.Issuer{Name: "demo", Issuer: testIssuer, Audiences: []string{"orders-api"}, Leeway: 0, FetchTimeout: 2 * time.Second,
		Introspection: &token.Introspection{ClientID: "orders-api", CacheTTL: time.Minute, NegativeCacheTTL: time.Second}, Introspect: c}
	v := token.NewVerifier(token.Options{Issuers: []token.Issuer{ti2}, Cache: token.NewCache(100), Now: ti.clock.Now})

	tr := ti.token(t, ccForm("orders:read"), "batch-opaque", "batch-secret")
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	id, err := v.Verify(ctx, tr.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if id.Source != token.SourceIntrospection || id.Subject != "batch-opaque" || id.ClientID != "batch-opaque" ||
		id.ScopeString != "orders:read" || id.Iss != testIssuer || id.Issuer != "demo" {
		t.Fatalf("identity = %+v", id)
	}
	ti.clock.Advance(DefaultAccessTokenLifetime + time.Second)
	var te *denial.Denial
	if _, err := v.Verify(context.Background(), tr.AccessToken); err == nil || !asTokenError(err, &te) || te.Reason != contract.ReasonInactive {
		t.Fatalf("expired opaque token: %v; want inactive", err)
	}
}

func asTokenError(err error, te **denial.Denial) bool {
	e, ok := err.(*denial.Denial)
	*te = e
	return ok
}
