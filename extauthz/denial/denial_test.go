package denial

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// Every Kind has a row, and each row says what RFC 6750, 9449 and 9470 ask of it.
func TestTable(t *testing.T) {
	for _, tt := range []struct {
		kind      Kind
		status    int
		code      codes.Code
		oauth     string
		challenge bool
	}{
		{ServerError, 500, codes.Internal, "server_error", false},
		{Unauthorized, 401, codes.Unauthenticated, "", true},
		{InvalidRequest, 400, codes.InvalidArgument, "invalid_request", true},
		{NotHTTP, 400, codes.InvalidArgument, "invalid_request", false},
		{InvalidToken, 401, codes.Unauthenticated, "invalid_token", true},
		{InvalidDPoPProof, 401, codes.Unauthenticated, "invalid_dpop_proof", true},
		{UseDPoPNonce, 401, codes.Unauthenticated, "use_dpop_nonce", true},
		{InsufficientUserAuthentication, 401, codes.Unauthenticated, "insufficient_user_authentication", true},
		{InsufficientScope, 403, codes.PermissionDenied, "insufficient_scope", true},
		{AccessDenied, 403, codes.PermissionDenied, "access_denied", false},
		{Unavailable, 503, codes.Unavailable, "temporarily_unavailable", false},
		{TooManyRequests, 429, codes.ResourceExhausted, "temporarily_unavailable", false},
	} {
		d := New(tt.kind, "r", "desc")
		resp := d.Response("")
		den := resp.GetDeniedResponse()
		hasChallenge := false
		for _, h := range den.GetHeaders() {
			hasChallenge = hasChallenge || h.GetHeader().GetKey() == "www-authenticate"
		}
		if d.HTTPStatus() != tt.status || int(den.GetStatus().GetCode()) != tt.status || codes.Code(resp.GetStatus().GetCode()) != tt.code ||
			d.OAuthError() != tt.oauth || hasChallenge != tt.challenge {
			t.Errorf("kind %d: status %d, code %v, error %q, challenge %v; want %d %v %q %v", tt.kind, d.HTTPStatus(),
				codes.Code(resp.GetStatus().GetCode()), d.OAuthError(), hasChallenge, tt.status, tt.code, tt.oauth, tt.challenge)
		}
	}
	if len(classes) != int(TooManyRequests)+1 {
		t.Errorf("%d rows for %d kinds", len(classes), TooManyRequests+1)
	}
}

func headers(d *Denial, algs string) map[string][]string {
	m := map[string][]string{}
	for _, h := range d.Response(algs).GetDeniedResponse().GetHeaders() {
		m[h.GetHeader().GetKey()] = append(m[h.GetHeader().GetKey()], h.GetHeader().GetValue())
	}
	return m
}

// The error goes in the challenge of the scheme the client used; the other scheme's
// challenge goes bare, and only a 401 offers DPoP beside Bearer.
func TestChallenges(t *testing.T) {
	d := New(InvalidToken, "expired", "the token has expired")
	d.ResourceMetadata = "https://api.example.com/.well-known/oauth-protected-resource"
	got := headers(d, "ES256 EdDSA")["www-authenticate"]
	want := []string{
		`Bearer realm="scopegate", error="invalid_token", error_description="the token has expired", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource"`,
		`DPoP algs="ES256 EdDSA", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Bearer client:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	d.DPoP = true
	got = headers(d, "ES256 EdDSA")["www-authenticate"]
	if !strings.HasPrefix(got[0], `DPoP algs="ES256 EdDSA", error="invalid_token"`) || strings.Contains(got[1], "error=") {
		t.Errorf("DPoP client: %q", got)
	}
	proof := New(InvalidDPoPProof, "invalid_dpop_proof", "bad")
	if got := headers(proof, "ES256")["www-authenticate"]; !strings.HasPrefix(got[0], `DPoP algs="ES256", error="invalid_dpop_proof"`) {
		t.Errorf("a proof's error is always DPoP's: %q", got)
	}
	scope := New(InsufficientScope, "insufficient_scope", "lacks")
	scope.Scope = `a "b`
	if got := headers(scope, "ES256")["www-authenticate"]; len(got) != 1 || !strings.Contains(got[0], `scope="a \"b"`) {
		t.Errorf("403: one Bearer challenge, scope quoted: %q", got)
	}
}

func TestRetryAfterNonceAndHeaders(t *testing.T) {
	d := New(Unavailable, "no_keys", "later")
	if got := headers(d, "")["retry-after"]; len(got) != 1 || got[0] != "5" {
		t.Errorf("default Retry-After %q", got)
	}
	d.RetryAfter = 1500 * time.Millisecond
	if got := headers(d, "")["retry-after"]; got[0] != "2" {
		t.Errorf("Retry-After %q, want whole seconds", got)
	}
	n := New(UseDPoPNonce, "use_dpop_nonce", "nonce")
	n.Nonce, n.Headers = "abc", []Header{{"x-policy", "1"}}
	h := headers(n, "ES256")
	if h["dpop-nonce"][0] != "abc" || h["x-policy"][0] != "1" || h["retry-after"] != nil {
		t.Errorf("headers %v", h)
	}
	p := New(AccessDenied, "mine", "no")
	p.Status = 451
	if r := p.Response(""); r.GetDeniedResponse().GetStatus().GetCode() != 451 || codes.Code(r.GetStatus().GetCode()) != codes.InvalidArgument {
		t.Errorf("a policy's status: %v", r)
	}
}

func TestErrorText(t *testing.T) {
	d := New(ServerError, "policy_timeout", "the authorization policy failed")
	d.Err = errors.New("evaluation exceeded its time budget")
	if !errors.Is(d, d.Err) || d.Error() != "policy_timeout: the authorization policy failed: evaluation exceeded its time budget" {
		t.Errorf("%v", d)
	}
	w := New(InvalidToken, "expired", "the token has expired")
	if c := w.WithDetail("exp 1, now 2"); c == w || w.Detail != "" || c.Error() != "expired: the token has expired (exp 1, now 2)" {
		t.Errorf("WithDetail: %v / %v", c, w)
	}
}
