package oauthclient

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/internal/oauth"
)

// The demo provider binds tokens to the key of the DPoP proof sent with the token request
// (RFC 9449 §5, §6): token_type DPoP, cnf.jkt the key's thumbprint. A public client's refresh
// token is bound too: refreshing it needs a proof of the same key.
func TestDPoPBoundTokens(t *testing.T) {
	ep := startIDP(t)
	dir := t.TempDir()
	k, err := LoadOrCreateDPoPKey(filepath.Join(dir, "dpop-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateDPoPKey(filepath.Join(dir, "dpop-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	jkt, _ := k.Thumbprint()
	if j2, _ := again.Thumbprint(); j2 != jkt {
		t.Fatal("the key kept next to the cache was not read back")
	}
	boundTo := func(t *testing.T, e *Entry) string {
		t.Helper()
		d, err := oauth.Decode(e.AccessToken, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cnf, _ := d.Claims["cnf"].(map[string]any)
		got, _ := cnf["jkt"].(string)
		return got
	}

	t.Run("client credentials", func(t *testing.T) {
		e, err := ClientCredentials(t.Context(), k.Client(http.DefaultClient), ClientCredentialsOptions{
			Issuer: ep.Issuer, TokenURL: ep.TokenURL, ClientID: "reporting-job", Secret: "reporting-secret"})
		if err != nil {
			t.Fatal(err)
		}
		if e.TokenType != "DPoP" || boundTo(t, e) != jkt {
			t.Fatalf("token_type %q, cnf.jkt %q; want DPoP bound to %s", e.TokenType, boundTo(t, e), jkt)
		}
		plain, err := ClientCredentials(t.Context(), http.DefaultClient, ClientCredentialsOptions{
			Issuer: ep.Issuer, TokenURL: ep.TokenURL, ClientID: "reporting-job", Secret: "reporting-secret"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.EqualFold(plain.TokenType, "Bearer") || boundTo(t, plain) != "" {
			t.Fatalf("without a proof: token_type %q, cnf.jkt %q", plain.TokenType, boundTo(t, plain))
		}
	})

	t.Run("a bad proof is refused", func(t *testing.T) {
		hc := &http.Client{Transport: headerTransport{"DPoP", "not.a.proof"}}
		_, err := ClientCredentials(t.Context(), hc, ClientCredentialsOptions{
			Issuer: ep.Issuer, TokenURL: ep.TokenURL, ClientID: "reporting-job", Secret: "reporting-secret"})
		if err == nil || !strings.Contains(err.Error(), "invalid_dpop_proof") {
			t.Fatalf("error %v, want invalid_dpop_proof", err)
		}
	})

	t.Run("public client refresh is bound to the key", func(t *testing.T) {
		errc := make(chan error, 1)
		first, err := Login(t.Context(), k.Client(http.DefaultClient), LoginOptions{
			Endpoints: ep, ClientID: "orders-cli", Scopes: []string{"orders:read"}, Timeout: time.Minute,
			ShowURL: func(u string) { go userAgent(u, "alice", "allow", errc) },
		})
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if boundTo(t, first) != jkt {
			t.Fatalf("login: cnf.jkt %q, want %s", boundTo(t, first), jkt)
		}
		other, err := LoadOrCreateDPoPKey(filepath.Join(t.TempDir(), "k.pem"))
		if err != nil {
			t.Fatal(err)
		}
		for name, hc := range map[string]*http.Client{"no proof": http.DefaultClient, "another key": other.Client(http.DefaultClient)} {
			if _, err := Refresh(t.Context(), hc, first, nil); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
				t.Fatalf("refresh with %s: %v, want invalid_grant", name, err)
			}
		}
		next, err := Refresh(t.Context(), k.Client(http.DefaultClient), first, nil)
		if err != nil {
			t.Fatal(err)
		}
		if boundTo(t, next) != jkt {
			t.Fatalf("refresh: cnf.jkt %q, want %s", boundTo(t, next), jkt)
		}
	})
}

// headerTransport adds one header to every request.
type headerTransport struct{ name, value string }

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.name, h.value)
	return http.DefaultTransport.RoundTrip(r)
}
