package check_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/internal/testissuer"
)

func policyRig(t *testing.T, src string) (*rig, *policy.Engine, string, *testissuer.Key) {
	t.Helper()
	k := testissuer.NewKey("k1", "ES256")
	r := newRig(t, []*testissuer.Key{k}, "token-only", 1000)
	dir := t.TempDir()
	write(t, dir, src)
	eng, err := policy.New(context.Background(), policy.Options{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	r.svc = check.New(check.Options{Verifier: r.svc.Verifier(), Policy: eng})
	return r, eng, dir, k
}

func write(t *testing.T, dir, src string) {
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
}

func allowed(t *testing.T, svc *check.Service, req *authv3.CheckRequest) bool {
	t.Helper()
	resp, err := svc.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return codes.Code(resp.GetStatus().GetCode()) == codes.OK
}

// A decision reused per token must never outlive its policy revision.
func TestDecisionCacheFollowsRevision(t *testing.T) {
	r, eng, dir, k := policyRig(t, "package scopegate.authz\ndecision := {\"allow\": input.route.name == \"orders-read\"}\n")
	if !eng.Revision().Reads.Cacheable {
		t.Fatal("this policy reads only the route: its decisions should be cacheable")
	}
	req := request(r.token(k, 1, "orders:read"))
	if !allowed(t, r.svc, req) || !allowed(t, r.svc, req) {
		t.Fatal("v1 should allow")
	}
	write(t, dir, "package scopegate.authz\ndecision := {\"allow\": false}\n")
	if _, err := eng.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if allowed(t, r.svc, req) {
		t.Fatal("a decision of the previous revision was reused")
	}
	// Another route with the same token is decided on its own.
	other := request(r.token(k, 1, "orders:read"))
	other.Attributes.ContextExtensions = map[string]string{"route": "admin", "scopes": "admin"}
	if allowed(t, r.svc, other) {
		t.Fatal("admin allowed")
	}
}

// A policy that reads the path is evaluated for every request.
func TestDecisionNotCachedWhenThePolicyReadsTheRequest(t *testing.T) {
	r, eng, _, k := policyRig(t, "package scopegate.authz\ndecision := {\"allow\": input.request.path == \"/orders/42\"}\n")
	if eng.Revision().Reads.Cacheable {
		t.Fatal("a policy reading the path must not be cacheable")
	}
	tok := r.token(k, 2, "orders:read")
	if !allowed(t, r.svc, request(tok)) {
		t.Fatal("/orders/42 should be allowed")
	}
	req := request(tok)
	req.Attributes.Request.Http.Path = "/orders/43"
	if allowed(t, r.svc, req) {
		t.Fatal("/orders/43 allowed: a decision for another path was reused")
	}
}
