package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scopegate/scopegate/demo/idp"
	"github.com/scopegate/scopegate/internal/oauth"
	"github.com/scopegate/scopegate/oauthclient"
)

// startDemoIDP runs the demo provider from compose/idp.yaml in-process, its issuer its own URL.
func startDemoIDP(t *testing.T) string {
	t.Helper()
	cfg, err := idp.Load("../../compose/idp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	cfg.Issuer = "http://" + srv.Listener.Addr().String()
	p, err := idp.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = p.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return cfg.Issuer
}

// urlWriter collects a command's output and hands over the authorization URL it prints.
type urlWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	urls chan string
	sent bool
}

var printedURL = regexp.MustCompile(`(?m)^  (http://\S+/authorize\?\S+)$`)

func (w *urlWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if m := printedURL.FindSubmatch(w.buf.Bytes()); m != nil && !w.sent {
		w.sent = true
		w.urls <- string(m[1])
	}
	return len(p), nil
}

func (w *urlWriter) String() string { w.mu.Lock(); defer w.mu.Unlock(); return w.buf.String() }

var (
	formAuthRequestID = regexp.MustCompile(`name="authRequestID" value="([^"]+)"`)
	formCSRFToken     = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// signIn plays the browser on the printed URL: password, the one-time code when the page
// asks for it, consent; it returns the authorization URL's query and whether a second factor
// was asked.
func signIn(authURL, user, code string) (url.Values, bool, error) {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	u, err := url.Parse(authURL)
	if err != nil {
		return nil, false, err
	}
	base := u.Scheme + "://" + u.Host
	fetch := func(resp *http.Response, err error) (string, error) {
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	page, err := fetch(hc.Get(authURL))
	if err != nil {
		return nil, false, err
	}
	form := func(page string, extra url.Values) url.Values {
		v := url.Values{}
		if m := formAuthRequestID.FindStringSubmatch(page); m != nil {
			v.Set("authRequestID", m[1])
		}
		if m := formCSRFToken.FindStringSubmatch(page); m != nil {
			v.Set("csrf", m[1])
		}
		for k, x := range extra {
			v[k] = x
		}
		return v
	}
	page, err = fetch(hc.PostForm(base+idp.PathLogin, form(page, url.Values{"username": {user}, "password": {user}})))
	if err != nil {
		return nil, false, err
	}
	second := strings.Contains(page, idp.PathSecondFactor)
	if second {
		if page, err = fetch(hc.PostForm(base+idp.PathSecondFactor, form(page, url.Values{"code": {code}}))); err != nil {
			return nil, false, err
		}
	}
	// The consent form as a browser posts it: every scope box the page ticked stays ticked.
	consent := url.Values{"decision": {"allow"}}
	for _, m := range tickedScope.FindAllStringSubmatch(page, -1) {
		consent.Add("scope", m[1])
	}
	if _, err := fetch(hc.PostForm(base+idp.PathConsent, form(page, consent))); err != nil {
		return nil, false, err
	}
	return u.Query(), second, nil
}

// tickedScope is a scope box the consent page shows ticked.
var tickedScope = regexp.MustCompile(`type="checkbox" name="scope" value="([^"]+)" checked`)

// runLogin runs a token command that prints an authorization URL, signs in on it as user, and
// returns the command's output and the URL's query.
func runLogin(t *testing.T, user, code string, args ...string) (string, url.Values, bool) {
	t.Helper()
	w := &urlWriter{urls: make(chan string, 1)}
	cmd := newRootCmd()
	cmd.SetOut(w)
	cmd.SetErr(w)
	cmd.SetArgs(append(args, "--timeout", "30s"))
	done := make(chan error, 1)
	go func() { done <- cmd.Execute() }()
	select {
	case authURL := <-w.urls:
		q, second, err := signIn(authURL, user, code)
		if err != nil {
			t.Fatalf("browser: %v", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("%v: %v\n%s", args, err, w)
		}
		return w.String(), q, second
	case err := <-done:
		t.Fatalf("%v ended before printing a URL: %v\n%s", args, err, w)
	}
	return "", nil, false
}

// TestTokenStepUp: `token login --acr-values --max-age` sends them, and `token step-up
// --challenge` reads a 401's challenge and runs the login it asks for, keeping the cached
// token's client, issuer and scopes; the new token carries the stronger acr.
func TestTokenStepUp(t *testing.T) {
	issuer := startDemoIDP(t)
	cache := filepath.Join(t.TempDir(), "tokens.json")
	common := []string{"--cache", cache}
	cached := func() map[string]any {
		t.Helper()
		e, err := oauthclient.Cache{Path: cache}.Get("")
		if err != nil {
			t.Fatal(err)
		}
		d, err := oauth.Decode(e.AccessToken, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return d.Claims
	}

	_, q, second := runLogin(t, "alice", "", append([]string{"token", "login", "--issuer", issuer, "--scope", "orders:read"}, common...)...)
	if q.Get("acr_values") != "" || q.Has("max_age") || second {
		t.Fatalf("a plain login asked %v (second factor %v)", q, second)
	}
	if c := cached(); c["acr"] != idp.ACRPassword {
		t.Fatalf("claims %v", c)
	}

	_, q, second = runLogin(t, "alice", "123456", append([]string{"token", "login", "--issuer", issuer, "--acr-values", idp.ACRMFA, "--max-age", "5m"}, common...)...)
	if q.Get("acr_values") != idp.ACRMFA || q.Get("max_age") != "300" || !second {
		t.Fatalf("login --acr-values --max-age asked %v (second factor %v)", q, second)
	}

	// A password-only token again, then the step-up a 401 asks for.
	runLogin(t, "alice", "", append([]string{"token", "login", "--issuer", issuer, "--scope", "orders:read orders:write"}, common...)...)
	challenge := `Bearer realm="scopegate", error="insufficient_user_authentication", error_description="a stronger and more recent authentication is required", ` +
		`acr_values="` + idp.ACRMFA + ` urn:example:hwk", max_age="300", resource_metadata="http://127.0.0.1:10000/.well-known/oauth-protected-resource", DPoP algs="ES256"`
	out, q, second := runLogin(t, "alice", "123456", append([]string{"token", "step-up", "--challenge", "WWW-Authenticate: " + challenge}, common...)...)
	if q.Get("acr_values") != idp.ACRMFA+" urn:example:hwk" || q.Get("max_age") != "300" || q.Get("client_id") != "orders-cli" ||
		q.Get("scope") != "orders:read orders:write" || !second {
		t.Fatalf("step-up asked %v (second factor %v)\n%s", q, second, out)
	}
	if !strings.Contains(out, "step-up for orders-cli at "+issuer+": acr_values "+idp.ACRMFA+" urn:example:hwk, max_age 5m0s (Bearer challenge)") {
		t.Errorf("output:\n%s", out)
	}
	c := cached()
	if c["acr"] != idp.ACRMFA || c["scope"] != "orders:read orders:write" {
		t.Fatalf("claims after step-up %v", c)
	}
	if c["auth_time"] == nil || c["amr"] == nil {
		t.Errorf("no auth_time or amr: %v", c)
	}

	// A challenge that asks for no step-up, and one that does not parse, are usage errors.
	for _, bad := range []string{`Bearer realm="scopegate", error="invalid_token"`, `Bearer error="insufficient_user_authentication`, ""} {
		out, err := run(t, append([]string{"token", "step-up", "--challenge", bad}, common...)...)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("--challenge %q: %v\n%s", bad, err, out)
		}
	}
}
