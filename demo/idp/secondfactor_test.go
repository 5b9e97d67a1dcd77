package idp

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// withSecondFactor gives alice the demo code 246810 (bob has none).
func withSecondFactor(c *Config) {
	for i := range c.Users {
		if c.Users[i].Username == "alice" {
			c.Users[i].SecondFactor = "246810"
		}
	}
}

// TestSecondFactor: acr_values asking for ACRMFA adds the one-time code step after the
// password; the tokens say which class was reached (acr), how (amr) and when (auth_time, the
// last factor); a refresh keeps them; the steps can't be skipped or guessed.
func TestSecondFactor(t *testing.T) {
	ti := newTestIDP(t, withSecondFactor)
	const redirect = "http://127.0.0.1:53682/callback"
	ask := func(p pkce, acrValues, maxAge string) map[string]string {
		q := cliAuthorize(p, redirect, "openid orders:read orders:write")
		q["acr_values"], q["max_age"] = acrValues, maxAge
		return q
	}
	// exchange completes a flow from the consent page and returns the token response.
	exchange := func(b *browser, cp page, p pkce) tokenResponse {
		t.Helper()
		if cp.status != 200 || !strings.Contains(cp.body, `value="allow"`) {
			t.Fatalf("consent page: %d %s", cp.status, cp.body)
		}
		done := b.post(PathConsent, url.Values{"authRequestID": {cp.id}, "csrf": {cp.csrf}, "decision": {"allow"}})
		tr := ti.token(t, codeForm(done.finalQuery.Get("code"), redirect, p.verifier), "", "")
		if tr.Status != 200 {
			t.Fatalf("code exchange: %d %s %s", tr.Status, tr.Error, tr.ErrorDescription)
		}
		return tr
	}

	t.Run("password only: acr password, amr pwd, auth_time", func(t *testing.T) {
		b, p := ti.browser(t), newPKCE()
		lp := b.get(authorizeURL(ti.srv.URL, ask(p, "", "")))
		start := ti.clock.Now().Unix()
		cp := b.post(PathLogin, url.Values{"authRequestID": {lp.id}, "csrf": {lp.csrf}, "username": {"alice"}, "password": {"alice"}})
		claims := ti.verify(t, exchange(b, cp, p).AccessToken)
		if claims["acr"] != ACRPassword || !sameStrings(claims["amr"], AMRPassword) || int64(claims["auth_time"].(float64)) != start {
			t.Errorf("claims %v", claims)
		}
	})

	t.Run("step-up: the code step, then acr mfa in the access and ID tokens; a refresh keeps it", func(t *testing.T) {
		b, p := ti.browser(t), newPKCE()
		lp := b.get(authorizeURL(ti.srv.URL, ask(p, ACRMFA, "300")))
		sf := b.post(PathLogin, url.Values{"authRequestID": {lp.id}, "csrf": {lp.csrf}, "username": {"alice"}, "password": {"alice"}})
		if sf.status != 200 || !strings.Contains(sf.body, `action="/login/second-factor"`) || sf.csrf == "" || !strings.Contains(sf.body, "NOT FOR PRODUCTION") {
			t.Fatalf("second-factor page: %d %s", sf.status, sf.body)
		}
		// Consent can't be posted before the second factor.
		if early := b.post(PathConsent, url.Values{"authRequestID": {sf.id}, "csrf": {sf.csrf}, "decision": {"allow"}}); early.status != http.StatusForbidden {
			t.Fatalf("consent before the second factor: %d %s", early.status, early.body)
		}
		wrong := b.post(PathSecondFactor, url.Values{"authRequestID": {sf.id}, "csrf": {sf.csrf}, "code": {"000000"}})
		if wrong.status != http.StatusUnauthorized || !strings.Contains(wrong.body, "not right") {
			t.Fatalf("wrong code: %d %s", wrong.status, wrong.body)
		}
		ti.clock.Advance(20 * time.Second) // auth_time is the moment of the last factor
		cp := b.post(PathSecondFactor, url.Values{"authRequestID": {sf.id}, "csrf": {sf.csrf}, "code": {"246810"}})
		tr := exchange(b, cp, p)
		claims := ti.verify(t, tr.AccessToken)
		if claims["acr"] != ACRMFA || !sameStrings(claims["amr"], AMRPassword, AMROTP, AMRMFA) || int64(claims["auth_time"].(float64)) != ti.clock.Now().Unix() {
			t.Errorf("access token claims %v", claims)
		}
		if id := ti.verify(t, tr.IDToken); id["acr"] != ACRMFA || id["auth_time"] == nil {
			t.Errorf("ID token claims %v", id)
		}
		ti.clock.Advance(time.Minute)
		rt := ti.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "client_id": {"orders-cli"}}, "", "")
		if rt.Status != 200 {
			t.Fatalf("refresh: %d %s", rt.Status, rt.ErrorDescription)
		}
		if rc := ti.verify(t, rt.AccessToken); rc["acr"] != ACRMFA || rc["auth_time"] != claims["auth_time"] {
			t.Errorf("refreshed token %v: want the sign-in's acr and auth_time", rc)
		}
	})

	t.Run("the second-factor form needs the password step and this browser's CSRF cookie", func(t *testing.T) {
		b, p := ti.browser(t), newPKCE()
		lp := b.get(authorizeURL(ti.srv.URL, ask(p, ACRMFA, "")))
		if r := b.post(PathSecondFactor, url.Values{"authRequestID": {lp.id}, "csrf": {lp.csrf}, "code": {"246810"}}); r.status != http.StatusForbidden {
			t.Fatalf("code before the password: %d", r.status)
		}
		sf := b.post(PathLogin, url.Values{"authRequestID": {lp.id}, "csrf": {lp.csrf}, "username": {"alice"}, "password": {"alice"}})
		other := ti.browser(t) // no cookie
		if r := other.post(PathSecondFactor, url.Values{"authRequestID": {sf.id}, "csrf": {sf.csrf}, "code": {"246810"}}); r.status != http.StatusForbidden {
			t.Fatalf("code from another browser: %d", r.status)
		}
	})

	t.Run("wrong codes end the request", func(t *testing.T) {
		b, p := ti.browser(t), newPKCE()
		lp := b.get(authorizeURL(ti.srv.URL, ask(p, ACRMFA, "")))
		sf := b.post(PathLogin, url.Values{"authRequestID": {lp.id}, "csrf": {lp.csrf}, "username": {"alice"}, "password": {"alice"}})
		var last page
		for range maxSecondFactorTries {
			last = b.post(PathSecondFactor, url.Values{"authRequestID": {sf.id}, "csrf": {sf.csrf}, "code": {"111111"}})
		}
		if last.status != http.StatusFound || last.finalQuery.Get("error") != "access_denied" {
			t.Fatalf("after %d wrong codes: %d %v", maxSecondFactorTries, last.status, last.finalQuery)
		}
		if r := b.post(PathSecondFactor, url.Values{"authRequestID": {sf.id}, "csrf": {sf.csrf}, "code": {"246810"}}); r.status == 200 {
			t.Fatal("the right code still worked on a dropped request")
		}
	})

	t.Run("a user without a second factor: unmet_authentication_requirements to the client", func(t *testing.T) {
		b, p := ti.browser(t), newPKCE()
		lp := b.get(authorizeURL(ti.srv.URL, ask(p, ACRMFA, "")))
		r := b.post(PathLogin, url.Values{"authRequestID": {lp.id}, "csrf": {lp.csrf}, "username": {"bob"}, "password": {"bob"}})
		if r.status != http.StatusFound || r.finalQuery.Get("error") != "unmet_authentication_requirements" || r.finalQuery.Get("state") != "st-123" {
			t.Fatalf("bob asked for mfa: %d %v %s", r.status, r.finalQuery, r.body)
		}
	})

	t.Run("an acr value the provider does not know is not reached", func(t *testing.T) {
		b, p := ti.browser(t), newPKCE()
		lp := b.get(authorizeURL(ti.srv.URL, ask(p, "urn:other:loa3", "")))
		cp := b.post(PathLogin, url.Values{"authRequestID": {lp.id}, "csrf": {lp.csrf}, "username": {"alice"}, "password": {"alice"}})
		if claims := ti.verify(t, exchange(b, cp, p).AccessToken); claims["acr"] != ACRPassword {
			t.Errorf("claims %v", claims)
		}
	})

	t.Run("discovery lists the acr values; client credentials carry none", func(t *testing.T) {
		resp, err := http.Get(ti.srv.URL + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var d oidc.DiscoveryConfiguration
		if err := decodeJSON(resp, &d); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(d.ACRValuesSupported, []string{ACRPassword, ACRMFA}) {
			t.Errorf("acr_values_supported %v", d.ACRValuesSupported)
		}
		cc := ti.verify(t, ti.token(t, ccForm("orders:read"), "reporting-job", "reporting-secret").AccessToken)
		for _, c := range []string{"acr", "amr", "auth_time"} {
			if _, ok := cc[c]; ok {
				t.Errorf("client credentials token has %s: %v", c, cc)
			}
		}
	})
}

func sameStrings(v any, want ...string) bool {
	list, _ := v.([]any)
	if len(list) != len(want) {
		return false
	}
	for i, x := range list {
		if x != want[i] {
			return false
		}
	}
	return true
}

func TestSecondFactorConfig(t *testing.T) {
	for _, code := range []string{"123", "abcdef", "12345x"} {
		cfg, err := Parse([]byte(testConfig))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Users[0].SecondFactor = code
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "users[0].second_factor") {
			t.Errorf("second_factor %q: %v", code, err)
		}
	}
}

func decodeJSON(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }

// An opaque access token of a signed-in user is introspected with its acr, amr and auth_time
// (RFC 9470 §6.2), and scopegate's introspection reading takes them.
func TestSecondFactorIntrospection(t *testing.T) {
	ti := newTestIDP(t, withSecondFactor, withOpaque, func(c *Config) {
		for i := range c.Clients {
			if c.Clients[i].ID == "orders-cli" {
				c.Clients[i].AccessTokenFormat = TokenFormatOpaque
			}
		}
	})
	const redirect = "http://127.0.0.1:53682/callback"
	b, p := ti.browser(t), newPKCE()
	q := cliAuthorize(p, redirect, "orders:read")
	q["acr_values"] = ACRMFA
	lp := b.get(authorizeURL(ti.srv.URL, q))
	sf := b.post(PathLogin, url.Values{"authRequestID": {lp.id}, "csrf": {lp.csrf}, "username": {"alice"}, "password": {"alice"}})
	cp := b.post(PathSecondFactor, url.Values{"authRequestID": {sf.id}, "csrf": {sf.csrf}, "code": {"246810"}})
	done := b.post(PathConsent, url.Values{"authRequestID": {cp.id}, "csrf": {cp.csrf}, "decision": {"allow"}})
	tr := ti.token(t, codeForm(done.finalQuery.Get("code"), redirect, p.verifier), "", "")
	if tr.Status != 200 {
		t.Fatalf("code exchange: %+v", tr)
	}
	status, got := ti.introspect(t, tr.AccessToken, "orders-api", "orders-api-secret")
	if status != 200 || got["active"] != true || got["acr"] != ACRMFA || !sameStrings(got["amr"], AMRPassword, AMROTP, AMRMFA) ||
		int64(got["auth_time"].(float64)) != ti.clock.Now().Unix() {
		t.Fatalf("introspection = %d %v", status, got)
	}
}
