package idp

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	chrome "github.com/scopegate/scopegate/internal/testing/browser"
	"github.com/scopegate/scopegate/oauthclient"
)

// chromium is the browser for the page tests. Where CI runs (CI set, as .ci/run's
// environment has it) a missing browser fails the test, since .ci/run installs it; on a
// developer's machine without one the test is skipped, saying how to get it.
func chromium(t *testing.T) *chrome.Browser {
	t.Helper()
	bin, err := chrome.Find()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI: %v (.ci/run installs it)", err)
		}
		t.Skipf("%v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	b, err := chrome.Start(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// screenshot keeps a PNG of the page in $SCOPEGATE_SCREENSHOTS (when set) and checks that
// Chromium rendered one.
func screenshot(ctx context.Context, t *testing.T, p *chrome.Page, name string) {
	t.Helper()
	png, err := p.Screenshot(ctx)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot %s: %v (%d bytes)", name, err, len(png))
	}
	if dir := os.Getenv("SCOPEGATE_SCREENSHOTS"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConsentInBrowser signs in and consents in a real headless Chromium, the way a user of
// `scopegate token login` does: the sign-in page lists the requested scopes with their
// descriptions, the consent page offers them as ticked boxes, the user unticks one, and the
// token (and the token response's scope) carries only what was granted.
func TestConsentInBrowser(t *testing.T) {
	b := chromium(t)
	ti := newTestIDP(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	authURL := make(chan string, 1)
	type result struct {
		e   *oauthclient.Entry
		err error
	}
	done := make(chan result, 1)
	go func() {
		e, err := oauthclient.Login(ctx, http.DefaultClient, oauthclient.LoginOptions{
			Endpoints: oauthclient.Endpoints{Issuer: testIssuer, AuthURL: ti.srv.URL + PathAuthorize, TokenURL: ti.srv.URL + PathToken},
			ClientID:  "orders-cli", Scopes: []string{"orders:read", "orders:write"},
			ShowURL: func(u string) { authURL <- u },
		})
		done <- result{e, err}
	}()
	var u string
	select {
	case u = <-authURL:
	case r := <-done:
		t.Fatalf("login ended before showing a URL: %v", r.err)
	}

	page, err := b.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := page.Navigate(ctx, u); err != nil {
		t.Fatal(err)
	}
	var requested []string
	if err := page.Eval(ctx, `[...document.querySelectorAll("#requested li")].map(li => li.innerText)`, &requested); err != nil {
		t.Fatal(err)
	}
	if strings.Join(requested, "\n") != "orders:read — See your orders\norders:write — Change your orders" {
		t.Errorf("sign-in page lists %q, want each requested scope with its description", requested)
	}
	screenshot(ctx, t, page, "login")
	err = page.AndWait(ctx, func() error {
		return page.Eval(ctx, `document.getElementById("username").value = "alice";
			document.getElementById("password").value = "alice";
			document.querySelector("form button[type=submit]").click()`, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	var boxes []struct {
		Value   string `json:"value"`
		Checked bool   `json:"checked"`
		Label   string `json:"label"`
	}
	if err := page.Eval(ctx, `[...document.querySelectorAll("input[name=scope]")].map(i => ({value: i.value, checked: i.checked, label: i.closest("label").innerText.trim()}))`, &boxes); err != nil {
		t.Fatal(err)
	}
	if len(boxes) != 2 || !boxes[0].Checked || !boxes[1].Checked || boxes[1].Label != "orders:write — Change your orders" {
		t.Fatalf("consent page boxes %+v, want orders:read and orders:write, ticked, described", boxes)
	}
	if err := page.Eval(ctx, `document.querySelector('input[name=scope][value="orders:write"]').click()`, nil); err != nil {
		t.Fatal(err)
	}
	screenshot(ctx, t, page, "consent")
	err = page.AndWait(ctx, func() error {
		return page.Eval(ctx, `document.querySelector('button[value=allow]').click()`, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("the client never got the redirect")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.e.Scope != "orders:read" {
		t.Errorf("token response scope %q, want only what was granted", r.e.Scope)
	}
	if claims := ti.verify(t, r.e.AccessToken); claims["scope"] != "orders:read" || claims["sub"] != "alice" {
		t.Errorf("token claims %v: want alice with orders:read only", claims)
	}
}
