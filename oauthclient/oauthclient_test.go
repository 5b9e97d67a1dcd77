package oauthclient

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/demo/idp"
	"github.com/scopegate/scopegate/internal/oauth"
)

const idpConfig = `
listen: ":0"
issuer: "http://placeholder"
api:
  audience: orders-api
  scopes: [{name: "orders:read"}, {name: "orders:write"}, {name: admin}]
clients:
  - id: orders-cli
    public: true
    scopes: ["orders:read", "orders:write"]
    grant_types: [authorization_code, refresh_token]
    redirect_uris: ["http://127.0.0.1/callback"]
  - id: reporting-job
    secret: reporting-secret
    scopes: ["orders:read"]
    grant_types: [client_credentials]
users:
  - {username: alice, password: alice, scopes: ["orders:read", "orders:write"]}
keys: {algorithm: ES256}
`

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// startIDP runs the real demo provider in-process, with its issuer set to its own URL so that
// discovery works as it does on localhost:9400.
func startIDP(t *testing.T) Endpoints {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	cfg, err := idp.Parse([]byte(strings.Replace(idpConfig, "http://placeholder", issuer, 1)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := idp.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = p.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	ep, err := Discover(t.Context(), srv.Client(), issuer)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

var (
	formID   = regexp.MustCompile(`name="authRequestID" value="([^"]+)"`)
	formCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// userAgent plays the browser: it opens the authorization URL, signs in, answers the consent
// page and follows the redirect to the CLI's loopback listener. Failures go to errc.
func userAgent(authURL, user, decision string, errc chan<- error) {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	fail := func(format string, args ...any) { errc <- &uaError{msg: format, args: args} }
	resp, err := hc.Get(authURL)
	if err != nil {
		fail("authorize: %v", err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id, csrf := formID.FindSubmatch(body), formCSRF.FindSubmatch(body)
	if id == nil || csrf == nil {
		fail("no login form: %s", body)
		return
	}
	base := resp.Request.URL.Scheme + "://" + resp.Request.URL.Host
	post := func(path string, f url.Values) (*http.Response, []byte, error) {
		r, err := hc.PostForm(base+path, f)
		if err != nil {
			return nil, nil, err
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r, b, nil
	}
	_, consentPage, err := post(idp.PathLogin, url.Values{"authRequestID": {string(id[1])}, "csrf": {string(csrf[1])}, "username": {user}, "password": {user}})
	if err != nil {
		fail("login: %v", err)
		return
	}
	form := url.Values{"authRequestID": {string(id[1])}, "csrf": {string(csrf[1])}, "decision": {decision}}
	// As a browser posts it: every scope box the page renders ticked.
	for _, m := range regexp.MustCompile(`type="checkbox" name="scope" value="([^"]+)" checked`).FindAllSubmatch(consentPage, -1) {
		form.Add("scope", string(m[1]))
	}
	r, body, err := post(idp.PathConsent, form)
	if err != nil {
		fail("consent: %v", err)
		return
	}
	if r.Request.URL.Path != CallbackPath {
		fail("consent ended at %s, not the loopback callback: %s", r.Request.URL, body)
		return
	}
	// The browser must get the whole result page, not a reset from a listener closed under it.
	want := "Logged in"
	if decision != "allow" {
		want = "Login failed"
	}
	if !strings.Contains(string(body), want) {
		fail("callback page %q, want %q", body, want)
		return
	}
	errc <- nil
}

type uaError struct {
	msg  string
	args []any
}

func (e *uaError) Error() string {
	return "user agent: " + strings.TrimSpace(fmt.Sprintf(e.msg, e.args...))
}

func TestLogin(t *testing.T) {
	ep := startIDP(t)
	tests := []struct {
		name, decision string
		forgeFirst     bool // a request with a wrong state reaches the listener first
		wantErr        string
		wantScope      string
	}{
		{name: "allow", decision: "allow", wantScope: "orders:read orders:write"},
		{name: "forged redirect is ignored", decision: "allow", forgeFirst: true, wantScope: "orders:read orders:write"},
		{name: "deny", decision: "deny", wantErr: "access_denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errc := make(chan error, 1)
			e, err := Login(t.Context(), http.DefaultClient, LoginOptions{
				Endpoints: ep, ClientID: "orders-cli", Scopes: []string{"orders:read", "orders:write"},
				Timeout: time.Minute,
				ShowURL: func(u string) {
					if tt.forgeFirst {
						redirect, _ := url.Parse(u)
						cb := redirect.Query().Get("redirect_uri")
						resp, err := http.Get(cb + "?code=stolen&state=wrong")
						if err != nil || resp.StatusCode != http.StatusBadRequest {
							t.Errorf("forged callback: %v %v", resp, err)
						}
						if resp != nil {
							resp.Body.Close()
						}
					}
					if !strings.Contains(u, "code_challenge_method=S256") || !strings.Contains(u, "redirect_uri=http%3A%2F%2F127.0.0.1%3A") {
						t.Errorf("authorization URL %s: want PKCE S256 and a loopback redirect", u)
					}
					go userAgent(u, "alice", tt.decision, errc)
				},
			})
			if uaErr := <-errc; uaErr != nil {
				t.Fatal(uaErr)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.Scope != tt.wantScope || e.RefreshToken == "" || e.ClientID != "orders-cli" || e.Grant != "authorization_code" || e.Expired(time.Now(), 0) {
				t.Fatalf("entry %+v", e)
			}
			d, err := oauth.Decode(e.AccessToken, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if d.Header["typ"] != "at+jwt" || d.Claims["sub"] != "alice" || d.Claims["iss"] != ep.Issuer {
				t.Fatalf("decoded %+v", d)
			}
		})
	}
}

func TestLoginTimeout(t *testing.T) {
	ep := startIDP(t)
	_, err := Login(t.Context(), http.DefaultClient, LoginOptions{
		Endpoints: ep, ClientID: "orders-cli", Timeout: 50 * time.Millisecond, ShowURL: func(string) {},
	})
	if err == nil || !strings.Contains(err.Error(), "no redirect from the browser within 50ms") {
		t.Fatalf("error %v, want a timeout", err)
	}
}

func TestLoginListenAddrMustBeLoopback(t *testing.T) {
	_, err := Login(t.Context(), http.DefaultClient, LoginOptions{
		Endpoints: Endpoints{AuthURL: "http://x/a", TokenURL: "http://x/t"}, ClientID: "c", ListenAddr: "0.0.0.0:0",
	})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("error %v, want a loopback error", err)
	}
}

func TestRefreshRotates(t *testing.T) {
	ep := startIDP(t)
	errc := make(chan error, 1)
	first, err := Login(t.Context(), http.DefaultClient, LoginOptions{
		Endpoints: ep, ClientID: "orders-cli", Scopes: []string{"orders:read"}, Timeout: time.Minute,
		ShowURL: func(u string) { go userAgent(u, "alice", "allow", errc) },
	})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	second, err := Refresh(t.Context(), http.DefaultClient, first, nil)
	if err != nil {
		t.Fatal(err)
	}
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken || second.Grant != "refresh_token" {
		t.Fatalf("refresh did not rotate: %+v", second)
	}
	if _, err := Refresh(t.Context(), http.DefaultClient, first, nil); err == nil || !strings.Contains(err.Error(), "invalid_grant") ||
		!strings.Contains(err.Error(), "revoke the whole grant") || !strings.Contains(err.Error(), "scopegate token login") {
		t.Fatalf("old refresh token: error %v, want invalid_grant saying the grant is revoked and to log in again", err)
	}
	// The reuse revoked the grant: the newest refresh token is refused too, with the same advice.
	if _, err := Refresh(t.Context(), http.DefaultClient, second, nil); err == nil || !strings.Contains(err.Error(), "scopegate token login") {
		t.Fatalf("refresh after reuse: error %v, want the grant revoked", err)
	}
	if _, err := Refresh(t.Context(), http.DefaultClient, &Entry{ClientID: "x"}, nil); err == nil {
		t.Fatal("want an error without a refresh token")
	}
}

func TestClientCredentials(t *testing.T) {
	ep := startIDP(t)
	tests := []struct {
		name, secret string
		scopes       []string
		wantErr      string
		wantScope    string
	}{
		{name: "ok", secret: "reporting-secret", wantScope: "orders:read"},
		{name: "explicit scope", secret: "reporting-secret", scopes: []string{"orders:read"}, wantScope: "orders:read"},
		{name: "bad secret", secret: "nope", wantErr: "invalid_client"},
		{name: "scope not allowed", secret: "reporting-secret", scopes: []string{"admin"}, wantErr: "invalid_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ClientCredentials(t.Context(), http.DefaultClient, ClientCredentialsOptions{
				Issuer: ep.Issuer, TokenURL: ep.TokenURL, ClientID: "reporting-job", Secret: tt.secret, Scopes: tt.scopes,
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.Scope != tt.wantScope || e.RefreshToken != "" || e.Grant != "client_credentials" {
				t.Fatalf("entry %+v", e)
			}
		})
	}
}

func TestCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested")
	c := Cache{Path: filepath.Join(dir, "tokens.json")}
	if _, err := c.Get(""); err == nil || !strings.Contains(err.Error(), "no token yet") {
		t.Fatalf("empty cache: %v", err)
	}
	a := &Entry{ClientID: "a", AccessToken: "ta"}
	b := &Entry{ClientID: "b", AccessToken: "tb", RefreshToken: "rb"}
	for _, e := range []*Entry{a, b} {
		if err := c.Put(e); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct{ client, want string }{{"", "tb"}, {"a", "ta"}, {"b", "tb"}}
	for _, tt := range tests {
		e, err := c.Get(tt.client)
		if err != nil || e.AccessToken != tt.want {
			t.Errorf("Get(%q) = %+v, %v; want %s", tt.client, e, err, tt.want)
		}
	}
	if _, err := c.Get("zzz"); err == nil || !strings.Contains(err.Error(), `no token for client "zzz"`) {
		t.Errorf("unknown client: %v", err)
	}
	st, err := os.Stat(c.Path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cache file mode %v %v, want 0600", st.Mode().Perm(), err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("cache dir mode %v, want 0700", st.Mode().Perm())
	}
	ids, _ := c.Clients()
	if strings.Join(ids, ",") != "a,b" {
		t.Errorf("clients %v", ids)
	}
	if err := os.WriteFile(c.Path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(""); err == nil || !strings.Contains(err.Error(), c.Path) {
		t.Errorf("corrupt cache: %v, want an error naming the file", err)
	}
}
