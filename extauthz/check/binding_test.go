package check_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/extauthz/dpop"
	"github.com/scopegate/scopegate/internal/checkreq"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/oauth"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// selfSigned returns a client certificate as Envoy forwards it (URL-encoded PEM) and its
// RFC 8705 thumbprint.
func selfSigned(t testing.TB) (forwarded, x5t string) {
	k := ecKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return envoyEncoded(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))), base64.RawURLEncoding.EncodeToString(sum[:])
}

// envoyEncoded URL-encodes a PEM the way Envoy fills attributes.source.certificate.
var envoyEncoded = strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace

type bindingRig struct {
	r      *rig
	k      *testissuer.Key
	holder *ecdsa.PrivateKey // the client's DPoP key
	jkt    string
	svc    *check.Service
	nonced *check.Service
}

func newBindingRig(t *testing.T) *bindingRig {
	k := testissuer.NewKey("k1", "ES256")
	r := newRig(t, []*testissuer.Key{k}, "token-only", 1000)
	holder := ecKey(t)
	jkt, err := oauth.Thumbprint(holder)
	if err != nil {
		t.Fatal(err)
	}
	proofs, err := dpop.New(dpop.Options{})
	if err != nil {
		t.Fatal(err)
	}
	nonces, err := dpop.New(dpop.Options{Nonces: dpop.NewNonces([]byte("0123456789abcdef0123456789abcdef"), 0)})
	if err != nil {
		t.Fatal(err)
	}
	return &bindingRig{r: r, k: k, holder: holder, jkt: jkt,
		svc:    check.New(check.Options{Verifier: r.verifier, DPoP: proofs, Headers: identityHeaders}),
		nonced: check.New(check.Options{Verifier: r.verifier, DPoP: nonces, Headers: identityHeaders}),
	}
}

func (b *bindingRig) token(cnf map[string]any) string {
	c := b.r.is.Standard("orders-api", "alice", "orders:read", time.Hour)
	if cnf != nil {
		c["cnf"] = cnf
	}
	return testissuer.Sign(b.k, c, nil)
}

func (b *bindingRig) proof(t testing.TB, key *ecdsa.PrivateKey, method, uri, tok, nonce string) string {
	p, err := oauth.SignProof(key, "ES256", oauth.ProofClaims{Method: method, URI: uri, AccessToken: tok, Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// answer runs one Check and returns the gRPC code, the denial's reason (from the
// WWW-Authenticate error) and the decoded response.
func answer(t *testing.T, svc *check.Service, req *authv3.CheckRequest) (codes.Code, *authv3.CheckResponse) {
	t.Helper()
	resp, err := svc.Check(context.Background(), req)
	if err == nil {
		resp, err = check.Decoded(resp)
	}
	if err != nil {
		t.Fatal(err)
	}
	return codes.Code(resp.GetStatus().GetCode()), resp
}

func dpopRequest(scheme, tok string, ext map[string]string, proofs ...string) *authv3.CheckRequest {
	r := checkreq.Request{Method: "GET", Path: "/orders/1?x=1", Host: "api.example.com", ContextExtensions: ext}
	r.Add("authorization", scheme+" "+tok)
	for _, p := range proofs {
		r.Add("dpop", p)
	}
	return r.MustBuild()
}

func wwwAuthenticate(resp *authv3.CheckResponse) []string {
	var out []string
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == "www-authenticate" {
			out = append(out, h.GetHeader().GetValue())
		}
	}
	return out
}

func TestSenderConstrainedTokens(t *testing.T) {
	b := newBindingRig(t)
	const uri = "https://api.example.com/orders/1"
	bound := b.token(map[string]any{"jkt": b.jkt})
	plain := b.token(nil)
	thief := ecKey(t)
	read := map[string]string{contract.ExtRoute: "orders-read", contract.ExtScopes: "orders:read"}
	bindingRequired := map[string]string{contract.ExtRoute: "orders-read", contract.ExtBinding: contract.BindingRequired}
	extraCnf := b.token(map[string]any{"jkt": b.jkt, "jwk": map[string]any{}})

	tests := []struct {
		name      string
		req       *authv3.CheckRequest
		code      codes.Code
		challenge string // a substring of the WWW-Authenticate values, for denials
	}{
		{"DPoP-bound token with its proof", dpopRequest("DPoP", bound, read, b.proof(t, b.holder, "GET", uri, bound, "")), codes.OK, ""},
		{"bound token sent as Bearer (downgrade)", dpopRequest("Bearer", bound, read), codes.Unauthenticated, `Bearer realm="scopegate", error="invalid_token"`},
		{"bound token stolen without its key", dpopRequest("DPoP", bound, read, b.proof(t, thief, "GET", uri, bound, "")), codes.Unauthenticated, `DPoP algs="ES256 EdDSA RS256 PS256", error="invalid_dpop_proof"`},
		{"no proof", dpopRequest("DPoP", bound, read), codes.Unauthenticated, `error="invalid_dpop_proof"`},
		{"two proofs", dpopRequest("DPoP", bound, read, b.proof(t, b.holder, "GET", uri, bound, ""), b.proof(t, b.holder, "GET", uri, bound, "")), codes.Unauthenticated, `error="invalid_dpop_proof"`},
		{"proof for another request", dpopRequest("DPoP", bound, read, b.proof(t, b.holder, "POST", uri, bound, "")), codes.Unauthenticated, `error="invalid_dpop_proof"`},
		{"proof for another host", dpopRequest("DPoP", bound, read, b.proof(t, b.holder, "GET", "https://evil.example.com/orders/1", bound, "")), codes.Unauthenticated, `error="invalid_dpop_proof"`},
		{"proof for another token", dpopRequest("DPoP", bound, read, b.proof(t, b.holder, "GET", uri, plain, "")), codes.Unauthenticated, `error="invalid_dpop_proof"`},
		{"unbound token with the DPoP scheme", dpopRequest("DPoP", plain, read, b.proof(t, b.holder, "GET", uri, plain, "")), codes.Unauthenticated, `DPoP algs="ES256 EdDSA RS256 PS256", error="invalid_token"`},
		{"plain bearer where binding is required", dpopRequest("Bearer", plain, bindingRequired), codes.Unauthenticated, `error="invalid_token", error_description="this resource requires`},
		{"DPoP where binding is required", dpopRequest("DPoP", bound, bindingRequired, b.proof(t, b.holder, "GET", uri, bound, "")), codes.OK, ""},
		{"malformed cnf", dpopRequest("Bearer", b.token(map[string]any{"jkt": 7}), read), codes.Unauthenticated, `error="invalid_token"`},
		// A cnf naming no confirmation method scopegate checks binds the token to something
		// unverifiable: refused, never taken for a plain bearer token.
		// A malformed DPoP Authorization header: the error goes in the DPoP challenge, the
		// scheme the client used; the Bearer challenge stays bare.
		{"DPoP scheme without a token", dpopRequest("DPoP", "", read), codes.InvalidArgument, `DPoP algs="ES256 EdDSA RS256 PS256", error="invalid_request", error_description="malformed credentials in the Authorization header" | Bearer realm="scopegate"`},
		{"DPoP scheme, token not b64token", dpopRequest("DPoP", "a b", read), codes.InvalidArgument, `DPoP algs="ES256 EdDSA RS256 PS256", error="invalid_request"`},
		{"cnf empty", dpopRequest("Bearer", b.token(map[string]any{}), read), codes.Unauthenticated, `Bearer realm="scopegate", error="invalid_token"`},
		{"cnf jwk", dpopRequest("Bearer", b.token(map[string]any{"jwk": map[string]any{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}}), read), codes.Unauthenticated, `error="invalid_token"`},
		{"cnf kid", dpopRequest("Bearer", b.token(map[string]any{"kid": "k1"}), read), codes.Unauthenticated, `error="invalid_token"`},
		{"cnf x5t#s256 in another case", dpopRequest("Bearer", b.token(map[string]any{"x5t#s256": "abc"}), read), codes.Unauthenticated, `error="invalid_token"`},
		{"cnf jkt beside an unknown member", dpopRequest("DPoP", extraCnf, read, b.proof(t, b.holder, "GET", uri, extraCnf, "")), codes.Unauthenticated, `error="invalid_token"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, resp := answer(t, b.svc, tt.req)
			if code != tt.code {
				t.Fatalf("code %v, want %v: %v", code, tt.code, resp)
			}
			if code == codes.OK {
				if resp.GetOkResponse() == nil || len(resp.GetOkResponse().GetHeaders()) == 0 {
					t.Fatalf("OK without identity headers: %v", resp)
				}
				return
			}
			got := strings.Join(wwwAuthenticate(resp), " | ")
			if !strings.Contains(got, tt.challenge) {
				t.Fatalf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			if strings.Contains(resp.GetDeniedResponse().GetBody(), bound) {
				t.Fatal("the denial echoes the token")
			}
		})
	}
}

// A proof copied from one request is refused on the next.
func TestDPoPReplayRefused(t *testing.T) {
	b := newBindingRig(t)
	bound := b.token(map[string]any{"jkt": b.jkt})
	req := dpopRequest("DPoP", bound, nil, b.proof(t, b.holder, "GET", "https://api.example.com/orders/1", bound, ""))
	if code, resp := answer(t, b.svc, req); code != codes.OK {
		t.Fatalf("first use: %v", resp)
	}
	code, resp := answer(t, b.svc, req)
	if code != codes.Unauthenticated || !strings.Contains(strings.Join(wwwAuthenticate(resp), " "), "already used") {
		t.Fatalf("replay: %v", resp)
	}
}

// With dpop_nonce, a proof without the server's nonce gets 401 use_dpop_nonce and a fresh
// DPoP-Nonce; the retry with it passes.
func TestDPoPNonce(t *testing.T) {
	b := newBindingRig(t)
	const uri = "https://api.example.com/orders/1"
	bound := b.token(map[string]any{"jkt": b.jkt})
	code, resp := answer(t, b.nonced, dpopRequest("DPoP", bound, nil, b.proof(t, b.holder, "GET", uri, bound, "")))
	var nonce string
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == "dpop-nonce" {
			nonce = h.GetHeader().GetValue()
		}
	}
	if code != codes.Unauthenticated || nonce == "" || !strings.Contains(strings.Join(wwwAuthenticate(resp), " "), `error="use_dpop_nonce"`) {
		t.Fatalf("no nonce: %v", resp)
	}
	if code, resp := answer(t, b.nonced, dpopRequest("DPoP", bound, nil, b.proof(t, b.holder, "GET", uri, bound, nonce))); code != codes.OK {
		t.Fatalf("with the nonce: %v", resp)
	}
}

// Certificate-bound tokens (RFC 8705) pass only with the certificate they name.
func TestCertificateBoundTokens(t *testing.T) {
	b := newBindingRig(t)
	cert, x5t := selfSigned(t)
	other, _ := selfSigned(t)
	bound := b.token(map[string]any{"x5t#S256": x5t})
	withCert := func(c string) *authv3.CheckRequest {
		req := dpopRequest("Bearer", bound, nil)
		req.Attributes.Source = &authv3.AttributeContext_Peer{Certificate: c, Address: &corev3.Address{}}
		return req
	}
	for _, tc := range []struct {
		name, cert string
		code       codes.Code
	}{
		{"its certificate", cert, codes.OK},
		{"another certificate", other, codes.Unauthenticated},
		{"no certificate", "", codes.Unauthenticated},
		{"not a certificate", envoyEncoded("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"), codes.Unauthenticated},
		{"not URL-encoded PEM", "%zz", codes.Unauthenticated},
	} {
		if code, resp := answer(t, b.svc, withCert(tc.cert)); code != tc.code {
			t.Errorf("%s: %v, want %v: %v", tc.name, code, tc.code, resp)
		}
	}
}

// One key that used up its share of the replay cache gets 429 with Retry-After; another
// key's proofs are still accepted.
func TestDPoPKeyQuotaIs429(t *testing.T) {
	b := newBindingRig(t)
	proofs, err := dpop.New(dpop.Options{ReplayEntries: 40}) // 2 proofs per key and span
	if err != nil {
		t.Fatal(err)
	}
	svc := check.New(check.Options{Verifier: b.r.verifier, DPoP: proofs, Headers: identityHeaders})
	const uri = "https://api.example.com/orders/1"
	bound := b.token(map[string]any{"jkt": b.jkt})
	var last *authv3.CheckResponse
	for range 3 {
		_, last = answer(t, svc, dpopRequest("DPoP", bound, nil, b.proof(t, b.holder, "GET", uri, bound, "")))
	}
	if last.GetDeniedResponse().GetStatus().GetCode() != 429 || codes.Code(last.GetStatus().GetCode()) != codes.ResourceExhausted {
		t.Fatalf("third proof of one key: %v; want 429", last)
	}
	retry := ""
	for _, h := range last.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == "retry-after" {
			retry = h.GetHeader().GetValue()
		}
	}
	if retry == "" || retry == "0" {
		t.Fatalf("429 without Retry-After: %v", last)
	}
	other := ecKey(t)
	otherJKT, _ := oauth.Thumbprint(other)
	tok := b.token(map[string]any{"jkt": otherJKT})
	if code, resp := answer(t, svc, dpopRequest("DPoP", tok, nil, b.proof(t, other, "GET", uri, tok, ""))); code != codes.OK {
		t.Fatalf("another key: %v", resp)
	}
}
