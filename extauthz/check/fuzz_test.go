package check_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/extauthz/bearer"
	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/extauthz/dpop"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/internal/checkreq"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
	"github.com/scopegate/scopegate/oauthclient"
)

// FuzzCheck drives the token front door (bearer parsing through verification and the policy)
// with arbitrary Authorization values and query strings. Whatever comes in, Check must answer,
// and it may allow only the one genuinely signed token. `make test` runs the seeds;
// `go test -fuzz FuzzCheck ./extauthz/check` explores.
func FuzzCheck(f *testing.F) {
	k := testissuer.NewKey("k1", "ES256")
	r := newRig(f, []*testissuer.Key{k}, "default-policy", 1000)
	valid := r.token(k, 1, "orders:read")
	parts := strings.Split(valid, ".")
	seeds := []string{
		"Bearer " + valid,
		"bearer  " + valid,
		"Bearer " + parts[0] + "." + parts[1] + ".",
		"Bearer " + parts[0] + "." + parts[1],
		"Bearer eyJhbGciOiJub25lIn0." + parts[1] + ".",
		"Bearer " + valid + "," + "Bearer " + valid,
		"Basic dXNlcjpwYXNz",
		"Bearer a.b.c.d.e",
		"Bearer ====",
		"",
		"Bearer " + strings.Repeat("A", 9000),
	}
	for _, s := range seeds {
		f.Add(s, "")
	}
	f.Add("Bearer "+valid, "access_token=x")
	f.Fuzz(func(t *testing.T, authz, query string) {
		req := request(valid)
		h := req.Attributes.Request.Http
		if authz == "" {
			delete(h.Headers, "authorization")
		} else {
			h.Headers["authorization"] = authz
		}
		if query != "" {
			h.Path = "/orders?" + query
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := r.svc.Check(ctx, req)
		if err == nil {
			resp, err = check.Decoded(resp)
		}
		if err != nil || resp.GetStatus() == nil {
			t.Fatalf("Check = %v, %v", resp, err)
		}
		if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
			tok, _, err := bearer.Extract(bearer.Request{Authorization: []string{authz}, RawQuery: query}, 0)
			if err != nil || tok != valid {
				t.Fatalf("allowed a request whose token is not the signed one: %q", authz)
			}
		} else if d := resp.GetDeniedResponse(); d == nil || d.GetStatus().GetCode() < 400 {
			t.Fatalf("a denial without an HTTP error status: %v", resp)
		} else if len(authz) > 20 && strings.Contains(d.GetBody(), authz[7:]) {
			t.Fatal("the denial echoes the token")
		}
	})
}

// FuzzStepUpChallenge drives the step-up challenge writer with whatever a route's context
// extensions (acr_values, max_age, resource_metadata) and a policy's step-up decision (its
// acr_values, taken here from a request header) can hold. Whatever comes in, no response
// header may carry a byte that ends a header line or a parameter early: every header value is
// visible ASCII, every WWW-Authenticate value parses as RFC 9110 challenges (one Bearer, one
// DPoP) with only the parameters scopegate writes, and a step-up challenge names exactly the
// requirement that caused it. `make test` runs the seeds; `go test -fuzz FuzzStepUpChallenge
// ./extauthz/check` explores.
func FuzzStepUpChallenge(f *testing.F) {
	k := testissuer.NewKey("k1", "ES256")
	r := newRig(f, []*testissuer.Key{k}, "token-only", 100)
	proofs, err := dpop.New(dpop.Options{})
	if err != nil {
		f.Fatal(err)
	}
	eng, err := policy.New(context.Background(), policy.Options{Path: writeFuzzPolicy(f)})
	if err != nil {
		f.Fatal(err)
	}
	svc := check.New(check.Options{Verifier: r.verifier, Headers: r.headers, Policy: eng, DPoP: proofs})
	c := r.is.Standard("orders-api", "alice", "orders:read", time.Hour)
	c["acr"], c["auth_time"] = "urn:pwd", time.Now().Add(-time.Hour).Unix()
	tok := testissuer.Sign(k, c, nil)

	for _, s := range [][4]string{
		{"urn:mfa urn:hwk", "300", metadataURL, ""},
		{"urn:mfa", "", "", "urn:hwk"},
		{"", "60", metadataURL, ""},
		{"urn:mfa\"\r\nx-evil: 1", "300", metadataURL, ""},
		{"a, error=\"x\"", "1\r\n", "https://x\"\r\nset-cookie: a=b", "b\"\r\nx-evil: 1"},
		{"urn:mfa\x00", "-1", "http://\x7f", "\\\""},
		{"urn:mfa  urn:hwk", "5m", "", "a b"},
		{" urn:mfa", "99999999", "", "é"},
		{"", "", "", "urn:ok"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	allowed := map[string]bool{"realm": true, "algs": true, "error": true, "error_description": true, "scope": true,
		"acr_values": true, "max_age": true, "resource_metadata": true}
	f.Fuzz(func(t *testing.T, acrValues, maxAge, metadata, wantACR string) {
		ext := map[string]string{contract.ExtRoute: "refunds", contract.ExtScopes: "orders:read"}
		for k, v := range map[string]string{contract.ExtACRValues: acrValues, contract.ExtMaxAge: maxAge, contract.ExtResourceMetadata: metadata} {
			if v != "" {
				ext[k] = v
			}
		}
		rq := checkreq.Request{Method: "POST", Path: "/refunds", Host: "api.example.com", ContextExtensions: ext}
		rq.Add("authorization", "Bearer "+tok)
		if wantACR != "" {
			rq.Add("x-want-acr", wantACR)
		}
		resp, err := svc.Check(context.Background(), rq.MustBuild())
		if err == nil {
			resp, err = check.Decoded(resp)
		}
		if err != nil {
			t.Fatal(err)
		}
		d := resp.GetDeniedResponse()
		if d == nil {
			return
		}
		var challenges []string
		for _, h := range d.GetHeaders() {
			v := h.GetHeader().GetValue()
			for i := 0; i < len(v); i++ {
				if c := v[i]; c != '\t' && (c < 0x20 || c > 0x7e) {
					t.Fatalf("header %s holds byte %#x: %q", h.GetHeader().GetKey(), c, v)
				}
			}
			if h.GetHeader().GetKey() == "www-authenticate" {
				challenges = append(challenges, v)
			}
		}
		if len(challenges) == 0 {
			return
		}
		cs, err := oauthclient.ParseChallenges(strings.Join(challenges, ", "))
		if err != nil {
			t.Fatalf("challenge %q: %v", challenges, err)
		}
		if len(cs) != 2 {
			t.Fatalf("%d challenges in %q, want Bearer and DPoP", len(cs), challenges)
		}
		var stepUp map[string]string
		for _, c := range cs {
			if c.Scheme != "Bearer" && c.Scheme != "DPoP" {
				t.Fatalf("challenge scheme %q in %q", c.Scheme, challenges)
			}
			for name := range c.Params {
				if !allowed[name] {
					t.Fatalf("parameter %q in %q", name, challenges)
				}
			}
			if c.Params["error"] == contract.ReasonInsufficientUserAuthentication {
				stepUp = c.Params
			}
		}
		if stepUp == nil {
			return
		}
		// The challenge names the requirement that caused it, byte for byte.
		if wantACR != "" {
			if stepUp["acr_values"] != wantACR || stepUp["max_age"] != "" {
				t.Fatalf("policy step-up for %q: challenge %q", wantACR, challenges)
			}
			return
		}
		if stepUp["acr_values"] != acrValues || stepUp["max_age"] != maxAge {
			t.Fatalf("route step-up for acr_values %q max_age %q: challenge %q", acrValues, maxAge, challenges)
		}
	})
}

// writeFuzzPolicy writes a policy that asks for step-up to the acr value the request's
// x-want-acr header names (a policy value as untrusted as it gets), and allows otherwise.
func writeFuzzPolicy(tb testing.TB) string {
	dir := tb.TempDir()
	src := `package scopegate.authz

decision := {"allow": true} if {
	not input.request.headers["x-want-acr"]
} else := {"allow": false, "reason": "insufficient_user_authentication", "acr_values": [input.request.headers["x-want-acr"]]}
`
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(src), 0o600); err != nil {
		tb.Fatal(err)
	}
	return dir
}
