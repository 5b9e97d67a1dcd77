package check_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/extauthz/bearer"
	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/internal/testissuer"
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
