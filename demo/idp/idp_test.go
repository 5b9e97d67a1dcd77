package idp

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const testIssuer = "http://localhost:9400"

const testConfig = `
listen: ":0"
issuer: "http://localhost:9400"
api:
  audience: orders-api
  scopes:
    - {name: "orders:read", description: "See your orders"}
    - {name: "orders:write", description: "Change your orders"}
    - {name: admin}
clients:
  - id: orders-cli
    public: true
    scopes: ["orders:read", "orders:write"]
    grant_types: [authorization_code, refresh_token]
    redirect_uris: ["http://127.0.0.1/callback"]
  - id: web-app
    secret: web-secret
    scopes: ["orders:read"]
    grant_types: [authorization_code]
    redirect_uris: ["http://app.example/cb"]
  - id: reporting-job
    secret: reporting-secret
    scopes: ["orders:read"]
    grant_types: [client_credentials]
  - id: ops-console
    secret: ops-secret
    scopes: [admin, "orders:read", "orders:write"]
    grant_types: [client_credentials]
users:
  - {username: alice, password: alice, scopes: ["orders:read", "orders:write"]}
  - {username: bob, password: bob, scopes: ["orders:read"]}
keys:
  algorithm: ES256
`

// clock is a settable time source for expiry tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type testIDP struct {
	p     *Provider
	srv   *httptest.Server
	clock *clock
}

func newTestIDP(t *testing.T, mutate ...func(*Config)) *testIDP {
	t.Helper()
	cfg, err := Parse([]byte(testConfig))
	if err != nil {
		t.Fatalf("test config: %v", err)
	}
	for _, m := range mutate {
		m(cfg)
	}
	clk := &clock{t: time.Now()}
	p, err := New(cfg, slog.New(slog.DiscardHandler), WithClock(clk.Now))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	return &testIDP{p: p, srv: srv, clock: clk}
}

// tokenResponse is the token endpoint's answer, success or error.
type tokenResponse struct {
	Status           int    `json:"-"`
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	RefreshToken     string `json:"refresh_token"`
	IDToken          string `json:"id_token"`
	ExpiresIn        int    `json:"expires_in"`
	Scope            string `json:"scope"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func (ti *testIDP) token(t *testing.T, form url.Values, user, pass string) tokenResponse {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, ti.srv.URL+PathToken, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatalf("token response %d %q: %v", resp.StatusCode, body, err)
	}
	tr.Status = resp.StatusCode
	return tr
}

// jwks fetches the published key set.
func (ti *testIDP) jwks(t *testing.T) jose.JSONWebKeySet {
	t.Helper()
	resp, err := http.Get(ti.srv.URL + PathKeys)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	return set
}

func kids(set jose.JSONWebKeySet) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}

// decodeSegment decodes one JWT segment into a generic map.
func decodeSegment(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatalf("segment %d: %v", i, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("segment %d: %v", i, err)
	}
	return m
}

// verify checks the token's signature against the published JWKS and returns its claims.
func (ti *testIDP) verify(t *testing.T, token string) map[string]any {
	t.Helper()
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA})
	if err != nil {
		t.Fatalf("parse JWS: %v", err)
	}
	kid := jws.Signatures[0].Header.KeyID
	set := ti.jwks(t)
	keys := set.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("kid %q: %d keys in JWKS", kid, len(keys))
	}
	if _, err := jws.Verify(keys[0]); err != nil {
		t.Fatalf("signature: %v", err)
	}
	return decodeSegment(t, token, 1)
}

func ccForm(scope string) url.Values {
	f := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		f.Set("scope", scope)
	}
	return f
}

func TestClientCredentials(t *testing.T) {
	ti := newTestIDP(t)
	tests := []struct {
		name             string
		client, secret   string
		scope            string
		wantStatus       int
		wantScope, wantE string
	}{
		{"default scopes are the client's", "reporting-job", "reporting-secret", "", 200, "orders:read", ""},
		{"requested subset", "ops-console", "ops-secret", "admin", 200, "admin", ""},
		{"intersection drops disallowed", "reporting-job", "reporting-secret", "orders:read orders:write", 200, "orders:read", ""},
		{"only disallowed scopes", "reporting-job", "reporting-secret", "orders:write", 400, "", "invalid_scope"},
		{"bad secret", "reporting-job", "wrong", "", 401, "", "invalid_client"},
		{"unknown client", "nobody", "x", "", 401, "", "invalid_client"},
		{"grant not registered", "web-app", "web-secret", "", 400, "", "unauthorized_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := ti.token(t, ccForm(tt.scope), tt.client, tt.secret)
			if tr.Status != tt.wantStatus || tr.Error != tt.wantE {
				t.Fatalf("got %d %q (%s), want %d %q", tr.Status, tr.Error, tr.ErrorDescription, tt.wantStatus, tt.wantE)
			}
			if tt.wantE != "" {
				return
			}
			if tr.TokenType != "Bearer" || tr.RefreshToken != "" || tr.IDToken != "" {
				t.Errorf("token_type %q, refresh %q, id_token %q: want Bearer and no refresh or ID token", tr.TokenType, tr.RefreshToken, tr.IDToken)
			}
			claims := ti.verify(t, tr.AccessToken)
			if claims["scope"] != tt.wantScope || tr.Scope != tt.wantScope {
				t.Errorf("scope claim %q, response scope %q, want %q", claims["scope"], tr.Scope, tt.wantScope)
			}
			if claims["sub"] != tt.client || claims["client_id"] != tt.client {
				t.Errorf("sub %q client_id %q, want the client %q", claims["sub"], claims["client_id"], tt.client)
			}
		})
	}
}

func TestClientSecretPost(t *testing.T) {
	ti := newTestIDP(t)
	f := ccForm("")
	f.Set("client_id", "reporting-job")
	f.Set("client_secret", "reporting-secret")
	if tr := ti.token(t, f, "", ""); tr.Status != 200 {
		t.Fatalf("client_secret_post: %d %s %s", tr.Status, tr.Error, tr.ErrorDescription)
	}
}

// TestAccessTokenFormat checks the RFC 9068 profile exactly: header and claim names, typ,
// fixed issuer whatever the Host header, audience, lifetime.
func TestAccessTokenFormat(t *testing.T) {
	ti := newTestIDP(t)
	req, _ := http.NewRequest(http.MethodPost, ti.srv.URL+PathToken, strings.NewReader(ccForm("").Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Host = "idp:9400" // as if fetched inside the compose network
	req.SetBasicAuth("reporting-job", "reporting-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != 200 {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}

	header := decodeSegment(t, tr.AccessToken, 0)
	if got := sortedKeys(header); !slices.Equal(got, []string{"alg", "kid", "typ"}) {
		t.Errorf("header fields %v, want [alg kid typ]", got)
	}
	if header["typ"] != "at+jwt" || header["alg"] != "ES256" {
		t.Errorf("header %v, want typ at+jwt, alg ES256", header)
	}
	claims := ti.verify(t, tr.AccessToken)
	want := []string{"aud", "client_id", "exp", "iat", "iss", "jti", "scope", "sub"}
	if got := sortedKeys(claims); !slices.Equal(got, want) {
		t.Errorf("claims %v, want %v", got, want)
	}
	if claims["iss"] != testIssuer {
		t.Errorf("iss %q, want the fixed issuer %q whatever the Host header", claims["iss"], testIssuer)
	}
	if claims["aud"] != "orders-api" {
		t.Errorf("aud %v, want orders-api", claims["aud"])
	}
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 300 || tr.ExpiresIn != 300 {
		t.Errorf("lifetime exp-iat=%v expires_in=%d, want 300 (5m default)", exp-iat, tr.ExpiresIn)
	}
	if jti, _ := claims["jti"].(string); len(jti) < 16 {
		t.Errorf("jti %q too short", jti)
	}
	// Discovery, also fetched with a foreign Host header, names the same fixed issuer.
	dreq, _ := http.NewRequest(http.MethodGet, ti.srv.URL+"/.well-known/openid-configuration", nil)
	dreq.Host = "idp:9400"
	dresp, err := http.DefaultClient.Do(dreq)
	if err != nil {
		t.Fatal(err)
	}
	defer dresp.Body.Close()
	var disc struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Grants  []string `json:"grant_types_supported"`
		PKCE    []string `json:"code_challenge_methods_supported"`
	}
	if err := json.NewDecoder(dresp.Body).Decode(&disc); err != nil {
		t.Fatal(err)
	}
	if disc.Issuer != testIssuer || disc.JWKSURI != testIssuer+"/keys" {
		t.Errorf("discovery issuer %q jwks_uri %q", disc.Issuer, disc.JWKSURI)
	}
	if !slices.Equal(disc.Grants, []string{"authorization_code", "refresh_token", "client_credentials"}) || !slices.Equal(disc.PKCE, []string{"S256"}) {
		t.Errorf("discovery grants %v pkce %v", disc.Grants, disc.PKCE)
	}
}

func sortedKeys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// --- authorization code flow, driven like a browser ---

type browser struct {
	t  *testing.T
	hc *http.Client
	ti *testIDP
}

func (ti *testIDP) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, ti: ti, hc: &http.Client{
		Jar: jar,
		// Stop at the redirect back to the client: there is no client listening in these tests.
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if req.URL.Host != strings.TrimPrefix(ti.srv.URL, "http://") {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}}
}

var (
	hiddenID   = regexp.MustCompile(`name="authRequestID" value="([^"]+)"`)
	hiddenCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	// a grantable scope's box on the consent page, ticked as the page renders it
	checkedScope = regexp.MustCompile(`type="checkbox" name="scope" value="([^"]+)" checked`)
)

type page struct {
	status     int
	body       string
	location   string
	id, csrf   string
	finalQuery url.Values // the client redirect's query, when the flow ended there
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	p := page{status: resp.StatusCode, body: string(body), location: resp.Header.Get("Location")}
	if m := hiddenID.FindStringSubmatch(p.body); m != nil {
		p.id = m[1]
	}
	if m := hiddenCSRF.FindStringSubmatch(p.body); m != nil {
		p.csrf = m[1]
	}
	if p.location != "" {
		if u, err := url.Parse(p.location); err == nil {
			p.finalQuery = u.Query()
		}
	}
	return p
}

func (b *browser) get(u string) page {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) page {
	req, _ := http.NewRequest(http.MethodPost, b.ti.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

type pkce struct{ verifier, challenge string }

func newPKCE() pkce {
	v := randomToken(32)
	h := sha256.Sum256([]byte(v))
	return pkce{verifier: v, challenge: base64.RawURLEncoding.EncodeToString(h[:])}
}

func authorizeURL(base string, q map[string]string) string {
	v := url.Values{}
	for k, s := range q {
		if s != "" {
			v.Set(k, s)
		}
	}
	return base + PathAuthorize + "?" + v.Encode()
}

func cliAuthorize(p pkce, redirect, scope string) map[string]string {
	return map[string]string{
		"client_id": "orders-cli", "response_type": "code", "redirect_uri": redirect, "scope": scope,
		"state": "st-123", "code_challenge": p.challenge, "code_challenge_method": "S256",
	}
}

// login runs authorize → login → consent and returns the client redirect's query.
func (b *browser) login(q map[string]string, user, pass, decision string) url.Values {
	b.t.Helper()
	lp := b.get(authorizeURL(b.ti.srv.URL, q))
	if lp.status != 200 || lp.csrf == "" {
		b.t.Fatalf("login page: %d %s", lp.status, lp.body)
	}
	if !strings.Contains(lp.body, "NOT FOR PRODUCTION") {
		b.t.Errorf("login page has no NOT FOR PRODUCTION banner")
	}
	cp := b.post(PathLogin, url.Values{"authRequestID": {lp.id}, "csrf": {lp.csrf}, "username": {user}, "password": {pass}})
	if cp.status != 200 || !strings.Contains(cp.body, `value="allow"`) {
		b.t.Fatalf("consent page: %d %s", cp.status, cp.body)
	}
	// As a browser posts the form: every scope box as rendered (checked).
	form := url.Values{"authRequestID": {cp.id}, "csrf": {cp.csrf}, "decision": {decision}}
	for _, m := range checkedScope.FindAllStringSubmatch(cp.body, -1) {
		form.Add("scope", m[1])
	}
	done := b.post(PathConsent, form)
	if done.status != http.StatusFound {
		b.t.Fatalf("after consent: %d %s", done.status, done.body)
	}
	return done.finalQuery
}

func codeForm(code, redirect, verifier string) url.Values {
	f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "client_id": {"orders-cli"}}
	if verifier != "" {
		f.Set("code_verifier", verifier)
	}
	return f
}

func TestAuthorizationCodePKCE(t *testing.T) {
	ti := newTestIDP(t)
	const redirect = "http://127.0.0.1:53682/callback" // any port: RFC 8252 §7.3
	tests := []struct {
		name, user, scope string
		wantScope         string
		wantConsentLists  []string
	}{
		{"alice: client-allowed ∩ user-grantable", "alice", "orders:read orders:write admin", "orders:read orders:write", []string{"orders:read", "orders:write", "admin"}},
		{"bob may only grant read", "bob", "orders:read orders:write", "orders:read", []string{"orders:read", "orders:write"}},
		{"openid adds an ID token, not a scope", "alice", "openid orders:read", "orders:read", []string{"orders:read"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ti.browser(t)
			p := newPKCE()
			q := b.login(cliAuthorize(p, redirect, tt.scope), tt.user, tt.user, "allow")
			if q.Get("state") != "st-123" || q.Get("code") == "" {
				t.Fatalf("client redirect query %v: want code and state", q)
			}
			tr := ti.token(t, codeForm(q.Get("code"), redirect, p.verifier), "", "")
			if tr.Status != 200 {
				t.Fatalf("code exchange: %d %s %s", tr.Status, tr.Error, tr.ErrorDescription)
			}
			claims := ti.verify(t, tr.AccessToken)
			if claims["scope"] != tt.wantScope || claims["sub"] != tt.user || claims["client_id"] != "orders-cli" || claims["aud"] != "orders-api" {
				t.Errorf("claims %v: want scope %q sub %q client_id orders-cli aud orders-api", claims, tt.wantScope, tt.user)
			}
			if tr.RefreshToken == "" {
				t.Errorf("no refresh token for a client with the refresh_token grant")
			}
			wantID := strings.Contains(tt.scope, "openid")
			if (tr.IDToken != "") != wantID {
				t.Fatalf("id_token present=%v, want %v", tr.IDToken != "", wantID)
			}
			if wantID {
				h := decodeSegment(t, tr.IDToken, 0)
				c := ti.verify(t, tr.IDToken)
				if aud, _ := c["aud"].([]any); h["typ"] != "JWT" || len(aud) != 1 || aud[0] != "orders-cli" {
					t.Errorf("ID token typ %v aud %v: want JWT and the client", h["typ"], c["aud"])
				}
			}
			// The code is single-use.
			if again := ti.token(t, codeForm(q.Get("code"), redirect, p.verifier), "", ""); again.Error != "invalid_grant" {
				t.Errorf("second exchange: %d %q, want invalid_grant", again.Status, again.Error)
			}
		})
	}
}

func TestAuthorizationCodeRefusals(t *testing.T) {
	ti := newTestIDP(t)
	const redirect = "http://127.0.0.1:40000/callback"
	t.Run("wrong PKCE verifier", func(t *testing.T) {
		p := newPKCE()
		q := ti.browser(t).login(cliAuthorize(p, redirect, "orders:read"), "alice", "alice", "allow")
		tr := ti.token(t, codeForm(q.Get("code"), redirect, newPKCE().verifier), "", "")
		if tr.Status != 400 || tr.Error != "invalid_grant" {
			t.Fatalf("got %d %q, want 400 invalid_grant", tr.Status, tr.Error)
		}
	})
	t.Run("missing PKCE verifier", func(t *testing.T) {
		p := newPKCE()
		q := ti.browser(t).login(cliAuthorize(p, redirect, "orders:read"), "alice", "alice", "allow")
		if tr := ti.token(t, codeForm(q.Get("code"), redirect, ""), "", ""); tr.Error != "invalid_request" {
			t.Fatalf("got %d %q, want invalid_request", tr.Status, tr.Error)
		}
	})
	t.Run("redirect_uri differs at the token endpoint", func(t *testing.T) {
		p := newPKCE()
		q := ti.browser(t).login(cliAuthorize(p, redirect, "orders:read"), "alice", "alice", "allow")
		if tr := ti.token(t, codeForm(q.Get("code"), "http://127.0.0.1:40001/callback", p.verifier), "", ""); tr.Error != "invalid_grant" {
			t.Fatalf("got %d %q, want invalid_grant", tr.Status, tr.Error)
		}
	})
	t.Run("user denies", func(t *testing.T) {
		q := ti.browser(t).login(cliAuthorize(newPKCE(), redirect, "orders:read"), "alice", "alice", "deny")
		if q.Get("error") != "access_denied" || q.Get("state") != "st-123" || q.Get("code") != "" {
			t.Fatalf("client redirect query %v: want error=access_denied with state", q)
		}
	})

	authorizeErrors := []struct {
		name       string
		q          map[string]string
		wantStatus int
		wantError  string // in the redirect to the client; "" when the IdP must not redirect
	}{
		{"public client without PKCE", map[string]string{"client_id": "orders-cli", "response_type": "code", "redirect_uri": redirect, "scope": "orders:read", "state": "s"}, 302, "invalid_request"},
		{"plain PKCE method", map[string]string{"client_id": "orders-cli", "response_type": "code", "redirect_uri": redirect, "scope": "orders:read", "state": "s", "code_challenge": "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopq", "code_challenge_method": "plain"}, 302, "invalid_request"},
		{"unregistered redirect path", cliAuthorize(newPKCE(), "http://127.0.0.1:40000/other", "orders:read"), 400, ""},
		{"non-loopback redirect", cliAuthorize(newPKCE(), "http://evil.example/callback", "orders:read"), 400, ""},
		{"unknown client", map[string]string{"client_id": "nobody", "response_type": "code", "redirect_uri": redirect, "scope": "orders:read"}, 400, ""},
		{"prompt=none cannot be satisfied", func() map[string]string {
			q := cliAuthorize(newPKCE(), redirect, "orders:read")
			q["prompt"] = "none"
			return q
		}(), 302, "login_required"},
	}
	for _, tt := range authorizeErrors {
		t.Run(tt.name, func(t *testing.T) {
			pg := ti.browser(t).get(authorizeURL(ti.srv.URL, tt.q))
			if pg.status != tt.wantStatus {
				t.Fatalf("status %d (%s), want %d", pg.status, pg.body, tt.wantStatus)
			}
			if tt.wantError != "" {
				if !strings.HasPrefix(pg.location, "http://127.0.0.1:40000/callback?") || pg.finalQuery.Get("error") != tt.wantError {
					t.Fatalf("redirect %q, want error=%s to the client", pg.location, tt.wantError)
				}
			} else if pg.location != "" {
				t.Fatalf("redirected to %q, want no redirect for an unverified client/redirect_uri", pg.location)
			}
		})
	}
}

func TestLoginForm(t *testing.T) {
	ti := newTestIDP(t)
	q := cliAuthorize(newPKCE(), "http://127.0.0.1:1234/callback", "orders:read")

	t.Run("wrong password", func(t *testing.T) {
		b := ti.browser(t)
		lp := b.get(authorizeURL(ti.srv.URL, q))
		pg := b.post(PathLogin, url.Values{"authRequestID": {lp.id}, "csrf": {lp.csrf}, "username": {"alice"}, "password": {"bob"}})
		if pg.status != 401 || !strings.Contains(pg.body, "wrong password") {
			t.Fatalf("got %d, want 401 with the login form again", pg.status)
		}
	})
	csrfCases := []struct {
		name       string
		form       func(lp page) url.Values
		dropCookie bool
	}{
		{"CSRF token missing from form", func(lp page) url.Values {
			return url.Values{"authRequestID": {lp.id}, "username": {"alice"}, "password": {"alice"}}
		}, false},
		{"CSRF token wrong", func(lp page) url.Values {
			return url.Values{"authRequestID": {lp.id}, "csrf": {"forged"}, "username": {"alice"}, "password": {"alice"}}
		}, false},
		{"CSRF cookie missing (form posted from another browser/site)", func(lp page) url.Values {
			return url.Values{"authRequestID": {lp.id}, "csrf": {lp.csrf}, "username": {"alice"}, "password": {"alice"}}
		}, true},
	}
	for _, tt := range csrfCases {
		t.Run(tt.name, func(t *testing.T) {
			b := ti.browser(t)
			lp := b.get(authorizeURL(ti.srv.URL, q))
			if tt.dropCookie {
				b = ti.browser(t) // a fresh cookie jar
			}
			if pg := b.post(PathLogin, tt.form(lp)); pg.status != 403 {
				t.Fatalf("got %d, want 403", pg.status)
			}
		})
	}
	t.Run("consent without login", func(t *testing.T) {
		b := ti.browser(t)
		lp := b.get(authorizeURL(ti.srv.URL, q))
		if pg := b.post(PathConsent, url.Values{"authRequestID": {lp.id}, "csrf": {lp.csrf}, "decision": {"allow"}}); pg.status != 403 {
			t.Fatalf("got %d, want 403", pg.status)
		}
	})
	t.Run("callback before consent", func(t *testing.T) {
		b := ti.browser(t)
		lp := b.get(authorizeURL(ti.srv.URL, q))
		pg := b.get(ti.srv.URL + PathAuthorize + "/callback?id=" + url.QueryEscape(lp.id))
		if pg.finalQuery.Get("code") != "" {
			t.Fatalf("callback before consent issued a code: %q", pg.location)
		}
	})
}

func TestRefreshRotation(t *testing.T) {
	ti := newTestIDP(t)
	const redirect = "http://127.0.0.1:5555/callback"
	p := newPKCE()
	q := ti.browser(t).login(cliAuthorize(p, redirect, "orders:read orders:write"), "alice", "alice", "allow")
	first := ti.token(t, codeForm(q.Get("code"), redirect, p.verifier), "", "")
	if first.RefreshToken == "" {
		t.Fatalf("no refresh token: %+v", first)
	}
	refresh := func(rt, scope string) tokenResponse {
		f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"orders-cli"}}
		if scope != "" {
			f.Set("scope", scope)
		}
		return ti.token(t, f, "", "")
	}

	second := refresh(first.RefreshToken, "")
	if second.Status != 200 || second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatalf("refresh: %d %s, new refresh token %q", second.Status, second.Error, second.RefreshToken)
	}
	if c := ti.verify(t, second.AccessToken); c["scope"] != "orders:read orders:write" || c["sub"] != "alice" {
		t.Errorf("refreshed claims %v", c)
	}

	// Narrowing: the access token gets fewer scopes, the grant keeps its own.
	third := refresh(second.RefreshToken, "orders:read")
	if c := ti.verify(t, third.AccessToken); third.Status != 200 || c["scope"] != "orders:read" {
		t.Fatalf("narrowed refresh: %d %s scope %v", third.Status, third.Error, c["scope"])
	}
	if wider := refresh(third.RefreshToken, "admin"); wider.Error != "invalid_scope" {
		t.Fatalf("widening refresh: %d %q, want invalid_scope", wider.Status, wider.Error)
	}

	// Rotation: a used refresh token is refused, and presenting it revokes the grant.
	if old := refresh(first.RefreshToken, ""); old.Status != 400 || old.Error != "invalid_grant" {
		t.Fatalf("reused refresh token: %d %q, want 400 invalid_grant", old.Status, old.Error)
	}
	if live := refresh(third.RefreshToken, ""); live.Error != "invalid_grant" {
		t.Fatalf("after reuse the whole grant must be revoked; latest token got %d %q", live.Status, live.Error)
	}

	// Expiry (24h default).
	q = ti.browser(t).login(cliAuthorize(p, redirect, "orders:read"), "alice", "alice", "allow")
	tr := ti.token(t, codeForm(q.Get("code"), redirect, p.verifier), "", "")
	ti.clock.Advance(DefaultRefreshTokenLifetime + time.Second)
	if exp := refresh(tr.RefreshToken, ""); exp.Error != "invalid_grant" {
		t.Fatalf("expired refresh token: %d %q, want invalid_grant", exp.Status, exp.Error)
	}
}

func TestRefreshTokenBoundToClient(t *testing.T) {
	ti := newTestIDP(t, func(c *Config) {
		c.Clients = append(c.Clients, Client{ID: "other-cli", Public: true, Scopes: []string{"orders:read"},
			GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken}, RedirectURIs: []string{"http://127.0.0.1/callback"}})
	})
	p := newPKCE()
	const redirect = "http://127.0.0.1:5555/callback"
	q := ti.browser(t).login(cliAuthorize(p, redirect, "orders:read"), "alice", "alice", "allow")
	tr := ti.token(t, codeForm(q.Get("code"), redirect, p.verifier), "", "")
	f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "client_id": {"other-cli"}}
	if got := ti.token(t, f, "", ""); got.Error != "invalid_grant" {
		t.Fatalf("refresh by another client: %d %q, want invalid_grant", got.Status, got.Error)
	}
}

func TestKeyRotation(t *testing.T) {
	ti := newTestIDP(t)
	before := ti.token(t, ccForm(""), "reporting-job", "reporting-secret")
	oldKid := decodeSegment(t, before.AccessToken, 0)["kid"].(string)

	rec := httptest.NewRecorder()
	ti.p.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/admin/rotate-keys", nil))
	if rec.Code != 200 {
		t.Fatalf("rotate: %d %s", rec.Code, rec.Body)
	}
	var res RotateResult
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.Active.ID == oldKid || len(res.Keys) != 2 || res.Keys[1].Status != "retired" {
		t.Fatalf("rotate result %+v", res)
	}

	after := ti.token(t, ccForm(""), "reporting-job", "reporting-secret")
	newKid := decodeSegment(t, after.AccessToken, 0)["kid"].(string)
	if newKid != res.Active.ID {
		t.Fatalf("new token kid %q, want the new active key %q", newKid, res.Active.ID)
	}
	if got := kids(ti.jwks(t)); !slices.Equal(got, []string{newKid, oldKid}) {
		t.Fatalf("JWKS kids %v, want new and old %v", got, []string{newKid, oldKid})
	}
	ti.verify(t, before.AccessToken) // still verifiable with the published old key

	// The old key stays while a token it signed may be valid (5m + margin), then leaves.
	ti.clock.Advance(DefaultAccessTokenLifetime)
	if got := kids(ti.jwks(t)); !slices.Contains(got, oldKid) {
		t.Fatalf("old kid gone at the token's expiry already: %v", got)
	}
	ti.clock.Advance(retentionMargin + time.Second)
	if got := kids(ti.jwks(t)); !slices.Equal(got, []string{newKid}) {
		t.Fatalf("JWKS kids %v after retention, want only %q", got, newKid)
	}
}

func TestRotateKeysAtAdminAPI(t *testing.T) {
	ti := newTestIDP(t)
	adm := httptest.NewServer(ti.p.AdminHandler())
	defer adm.Close()
	res, err := RotateKeysAt(t.Context(), adm.Client(), adm.URL)
	if err != nil {
		t.Fatal(err)
	}
	if res.Active.Status != "active" || len(res.Keys) != 2 {
		t.Fatalf("result %+v", res)
	}
	if _, err := RotateKeysAt(t.Context(), adm.Client(), adm.URL+"/nope"); err == nil {
		t.Fatal("want an error for a wrong admin URL")
	}
}

// TestConcurrentUse runs token requests and key rotations together (meaningful under -race).
func TestConcurrentUse(t *testing.T) {
	ti := newTestIDP(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				if tr := ti.token(t, ccForm(""), "ops-console", "ops-secret"); tr.Status != 200 {
					t.Errorf("token: %d %s", tr.Status, tr.Error)
				}
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			if _, err := ti.p.RotateKeys(); err != nil {
				t.Errorf("rotate: %v", err)
			}
			ti.jwks(t)
		}
	})
	wg.Wait()
}

func TestKeyAlgorithms(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			ti := newTestIDP(t, func(c *Config) {
				c.Keys.Algorithm = alg
				c.Keys.RSABits = 0
				if alg == "RS256" {
					c.Keys.RSABits = 2048
				}
			})
			tr := ti.token(t, ccForm(""), "reporting-job", "reporting-secret")
			if h := decodeSegment(t, tr.AccessToken, 0); h["alg"] != alg {
				t.Fatalf("alg %v, want %s", h["alg"], alg)
			}
			ti.verify(t, tr.AccessToken)
		})
	}
}

func TestKeyFileStorage(t *testing.T) {
	file := t.TempDir() + "/keys.json"
	withFile := func(c *Config) { c.Keys.Storage, c.Keys.File = "file", file }
	first := newTestIDP(t, withFile)
	if _, err := first.p.RotateKeys(); err != nil {
		t.Fatal(err)
	}
	want := kids(first.jwks(t))
	second := newTestIDP(t, withFile) // a restart: same keys
	if got := kids(second.jwks(t)); !slices.Equal(got, want) {
		t.Fatalf("after restart kids %v, want %v", got, want)
	}
	if st, err := statMode(file); err != nil || st != 0o600 {
		t.Fatalf("key file mode %o (%v), want 600", st, err)
	}
}

// The login page lists the requested scopes with their descriptions; the consent page offers
// each grantable one as a ticked box, and the user may grant fewer: the token, and the token
// response's scope, carry exactly what was granted. A scope the page did not offer is refused.
func TestConsentGrantsASubset(t *testing.T) {
	ti := newTestIDP(t)
	const redirect = "http://127.0.0.1:53682/callback"
	b := ti.browser(t)
	p := newPKCE()
	lp := b.get(authorizeURL(ti.srv.URL, cliAuthorize(p, redirect, "openid orders:read orders:write")))
	for _, want := range []string{"<code>orders:read</code> <span class=\"desc\">— See your orders</span>", "<code>orders:write</code> <span class=\"desc\">— Change your orders</span>"} {
		if !strings.Contains(lp.body, want) {
			t.Errorf("login page lacks %q:\n%s", want, lp.body)
		}
	}
	if strings.Contains(lp.body, "<code>openid</code>") {
		t.Errorf("login page lists openid as a permission")
	}
	cp := b.post(PathLogin, url.Values{"authRequestID": {lp.id}, "csrf": {lp.csrf}, "username": {"alice"}, "password": {"alice"}})
	boxes := checkedScope.FindAllStringSubmatch(cp.body, -1)
	if len(boxes) != 2 || boxes[0][1] != "orders:read" || boxes[1][1] != "orders:write" {
		t.Fatalf("consent page boxes %v, want orders:read and orders:write ticked:\n%s", boxes, cp.body)
	}
	done := b.post(PathConsent, url.Values{"authRequestID": {cp.id}, "csrf": {cp.csrf}, "decision": {"allow"}, "scope": {"orders:read"}})
	if done.status != http.StatusFound {
		t.Fatalf("after consent: %d %s", done.status, done.body)
	}
	tr := ti.token(t, codeForm(done.finalQuery.Get("code"), redirect, p.verifier), "", "")
	if tr.Status != 200 {
		t.Fatalf("code exchange: %d %s", tr.Status, tr.Error)
	}
	if claims := ti.verify(t, tr.AccessToken); claims["scope"] != "orders:read" {
		t.Errorf("token scope %v, want only what was granted", claims["scope"])
	}
	if tr.Scope != "openid orders:read" {
		t.Errorf("token response scope %q, want %q", tr.Scope, "openid orders:read")
	}

	b = ti.browser(t)
	lp = b.get(authorizeURL(ti.srv.URL, cliAuthorize(newPKCE(), redirect, "orders:read")))
	cp = b.post(PathLogin, url.Values{"authRequestID": {lp.id}, "csrf": {lp.csrf}, "username": {"alice"}, "password": {"alice"}})
	tampered := b.post(PathConsent, url.Values{"authRequestID": {cp.id}, "csrf": {cp.csrf}, "decision": {"allow"}, "scope": {"orders:read", "orders:write"}})
	if tampered.status != http.StatusBadRequest || !strings.Contains(tampered.body, "was not offered") {
		t.Fatalf("a scope the page did not offer: %d %s", tampered.status, tampered.body)
	}
}
