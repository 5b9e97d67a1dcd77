package check_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

func policyRig(t *testing.T, src string) (*rig, *policy.Engine, string, *testissuer.Key) {
	r, eng, dir, k, _ := policyRigMetrics(t, src)
	return r, eng, dir, k
}

// policyRigMetrics also returns the registry the service's metrics are registered with.
func policyRigMetrics(t *testing.T, src string) (*rig, *policy.Engine, string, *testissuer.Key, *prometheus.Registry) {
	t.Helper()
	k := testissuer.NewKey("k1", "ES256")
	r := newRig(t, []*testissuer.Key{k}, "token-only", 1000)
	dir := t.TempDir()
	write(t, dir, src)
	eng, err := policy.New(context.Background(), policy.Options{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	r.svc = check.New(check.Options{Verifier: r.verifier, Policy: eng, Headers: identityHeaders, Metrics: check.NewMetrics(reg)})
	return r, eng, dir, k, reg
}

// decisions reads scopegate_policy_decisions_total by source.
func decisions(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "scopegate_policy_decisions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

func write(t *testing.T, dir, src string) {
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
}

func allowed(t *testing.T, svc *check.Service, req *authv3.CheckRequest) bool {
	t.Helper()
	resp, err := svc.Check(context.Background(), req)
	if err == nil {
		resp, err = check.Decoded(resp)
	}
	if err != nil || resp.GetStatus() == nil {
		t.Fatalf("Check = %v, %v", resp, err)
	}
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		if resp.GetDeniedResponse() == nil {
			t.Fatalf("a denial without a denied response: %v", resp)
		}
		return false
	}
	// OK means an OK response carrying the verified identity, not merely "not a denial".
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == contract.HeaderSubject && h.GetHeader().GetValue() != "" {
			return true
		}
	}
	t.Fatalf("OK without the identity headers: %v", resp)
	return false
}

// A decision reused per token must never outlive its policy revision.
func TestDecisionCacheFollowsRevision(t *testing.T) {
	r, eng, dir, k := policyRig(t, "package scopegate.authz\ndecision := {\"allow\": input.route.name == \"orders-read\"}\n")
	if !eng.Revision().Reads.Cacheable {
		t.Fatal("this policy reads only the route: its decisions should be cacheable")
	}
	req := request(r.token(k, 1, "orders:read"))
	for i := range 2 { // evaluated, then from the token's cache
		if !allowed(t, r.svc, req) {
			t.Fatalf("v1 should allow (Check %d)", i+1)
		}
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

// tokenWith signs a token with extra claims.
func (r *rig) tokenWith(k *testissuer.Key, i int, scope string, extra map[string]any) string {
	c := r.is.Standard("orders-api", fmt.Sprintf("user-%d", i), scope, time.Hour)
	c["jti"] = fmt.Sprintf("jti-%d", i)
	for name, v := range extra {
		c[name] = v
	}
	return testissuer.Sign(k, c, nil)
}

// A never-seen token reuses the decision of a token that agrees on everything the policy
// reads, and only that: different scopes, route, method, extension or revision are decided
// on their own.
func TestSharedDecisions(t *testing.T) {
	r, eng, dir, k, reg := policyRigMetrics(t, `package scopegate.authz
decision := {"allow": true} if {
	"orders:read" in input.token.scopes
	input.route.name == "orders-read"
	input.request.method == "GET"
	object.get(input.route, "tenant", "a") == "a"
} else := {"allow": false, "status": 403, "reason": "no"}
`)
	if rd := eng.Revision().Reads; !rd.Shareable || !rd.Reads("token.scopes") {
		t.Fatalf("reads %+v: should be shareable, keyed by scopes", rd)
	}
	want := func(wantEval, wantToken, wantShared float64) {
		t.Helper()
		got := decisions(t, reg)
		if got["evaluated"] != wantEval || got["token_cache"] != wantToken || got["shared_cache"] != wantShared {
			t.Fatalf("decisions %v, want evaluated %v, token_cache %v, shared_cache %v", got, wantEval, wantToken, wantShared)
		}
	}
	if !allowed(t, r.svc, request(r.token(k, 1, "orders:read"))) {
		t.Fatal("first token denied")
	}
	want(1, 0, 0)
	// Another token, same scopes: shared.
	second := request(r.token(k, 2, "orders:read"))
	if !allowed(t, r.svc, second) {
		t.Fatal("second token denied")
	}
	want(1, 0, 1)
	// The same token again: its own cache.
	if !allowed(t, r.svc, second) {
		t.Fatal("second token denied on its second request")
	}
	want(1, 1, 1)

	for _, tc := range []struct {
		name  string
		req   *authv3.CheckRequest
		allow bool
	}{
		{"other scopes", request(r.token(k, 3, "profile")), false},
		{"scopes as an array claim, same set", request(r.tokenWith(k, 4, "", map[string]any{"scp": []string{"orders:read"}})), true},
		{"other method", func() *authv3.CheckRequest {
			q := request(r.token(k, 5, "orders:read"))
			q.Attributes.Request.Http.Method = "DELETE"
			return q
		}(), false},
		{"other route", func() *authv3.CheckRequest {
			q := request(r.token(k, 6, "orders:read"))
			q.Attributes.ContextExtensions = map[string]string{"route": "admin", "scopes": "orders:read"}
			return q
		}(), false},
		{"extra extension", func() *authv3.CheckRequest {
			q := request(r.token(k, 7, "orders:read"))
			q.Attributes.ContextExtensions["tenant"] = "b"
			return q
		}(), false},
	} {
		if got := allowed(t, r.svc, tc.req); got != tc.allow {
			t.Errorf("%s: allowed %v, want %v", tc.name, got, tc.allow)
		}
	}
	// Every case above differs in something the policy reads, except the array claim with
	// the same scopes: four evaluations, one more shared hit.
	want(5, 1, 2)

	// A new revision starts with no shared decisions.
	write(t, dir, "package scopegate.authz\ndecision := {\"allow\": false}\n")
	if _, err := eng.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if allowed(t, r.svc, request(r.token(k, 8, "orders:read"))) {
		t.Fatal("a decision of the previous revision was shared")
	}
}

// A revision that reads claims, or a per-token field such as sub, never lets one token's
// decision stand for another's with the same scopes.
func TestSharedDecisionsNeverCrossWhatThePolicyReads(t *testing.T) {
	for _, tc := range []struct {
		name, policy string
		shareable    bool
		a, b         map[string]any // claims of an allowed and a denied token, same scopes
	}{
		{"claims", `decision := {"allow": input.token.claims.tenant == "a"}`, false,
			map[string]any{"tenant": "a"}, map[string]any{"tenant": "b"}},
		{"sub", `decision := {"allow": input.token.sub == "alice"}`, true,
			map[string]any{"sub": "alice"}, map[string]any{"sub": "bob"}},
		{"client_id", `decision := {"allow": input.token.client_id == "app"}`, true,
			map[string]any{"client_id": "app"}, map[string]any{"client_id": "other"}},
		{"whole token", `decision := {"allow": object.get(input.token, "sub", "") == "alice"}`, false,
			map[string]any{"sub": "alice"}, map[string]any{"sub": "bob"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, eng, _, k := policyRig(t, "package scopegate.authz\n"+tc.policy+"\n")
			if got := eng.Revision().Reads.Shareable; got != tc.shareable {
				t.Fatalf("shareable = %v, want %v", got, tc.shareable)
			}
			if !allowed(t, r.svc, request(r.tokenWith(k, 1, "orders:read", tc.a))) {
				t.Fatal("token a denied")
			}
			if allowed(t, r.svc, request(r.tokenWith(k, 2, "orders:read", tc.b))) {
				t.Fatal("token b allowed: token a's decision was reused")
			}
		})
	}
}

// Concurrent Checks while the revision flips between allow and deny: once a reload has
// returned, no Check may answer with a decision of the revision before it, whatever the
// shared and per-token caches held (run under -race).
func TestSharedDecisionsUnderReload(t *testing.T) {
	allow := "package scopegate.authz\ndecision := {\"allow\": \"orders:read\" in input.token.scopes}\n"
	deny := "package scopegate.authz\ndecision := {\"allow\": false, \"status\": 403, \"reason\": \"off\"} if \"orders:read\" in input.token.scopes\n"
	r, eng, dir, k := policyRig(t, allow)
	reqs := make([]*authv3.CheckRequest, 64)
	for i := range reqs {
		reqs[i] = request(r.token(k, i, fmt.Sprintf("orders:read app:%d", i%4)))
	}
	for round := 0; round < 6; round++ {
		src, want := allow, true
		if round%2 == 0 {
			src, want = deny, false
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { // traffic during the reload
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = r.svc.Check(context.Background(), reqs[i%len(reqs)])
			}
		}()
		write(t, dir, src)
		if _, err := eng.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		close(stop)
		<-done
		for i, req := range reqs {
			if got := allowed(t, r.svc, req); got != want {
				t.Fatalf("round %d, token %d: allowed %v after the reload, want %v", round, i, got, want)
			}
		}
	}
}

// A revision that reads named request fields shares decisions between tokens on requests
// that agree on those fields, and only on those.
func TestSharedDecisionsByRequestFields(t *testing.T) {
	r, eng, _, k, reg := policyRigMetrics(t, `package scopegate.authz
decision := {"allow": true} if {
	input.request.path_segments == ["orders", "42"]
	input.request.headers["x-tenant"] == "a"
	input.request.query.v == ["1"]
	input.request.host == "api.example.com"
	not input.request.headers.authorization # never visible to a policy
} else := {"allow": false, "status": 403, "reason": "no"}
`)
	rd := eng.Revision().Reads
	if !rd.Shareable || rd.Cacheable || !rd.Reads("request.path_segments") || !rd.Reads("request.host") || !rd.Reads("request.query") ||
		!reflect.DeepEqual(rd.HeaderNames, []string{"authorization", "x-tenant"}) {
		t.Fatalf("reads %+v", rd)
	}
	req := func(i int, edit func(*authv3.AttributeContext_HttpRequest)) *authv3.CheckRequest {
		q := request(r.token(k, i, "orders:read"))
		h := q.Attributes.Request.Http
		h.Path, h.Headers[":path"], h.Headers["x-tenant"] = "/orders/42?v=1", "/orders/42?v=1", "a"
		if edit != nil {
			edit(h)
		}
		return q
	}
	if !allowed(t, r.svc, req(1, nil)) {
		t.Fatal("first request denied")
	}
	if !allowed(t, r.svc, req(2, nil)) { // another token, same request: shared
		t.Fatal("second request denied")
	}
	if got := decisions(t, reg); got["evaluated"] != 1 || got["shared_cache"] != 1 {
		t.Fatalf("decisions %v, want 1 evaluated and 1 shared", got)
	}
	for i, tc := range []struct {
		name string
		edit func(*authv3.AttributeContext_HttpRequest)
	}{
		{"other path", func(h *authv3.AttributeContext_HttpRequest) { h.Path = "/orders/43?v=1" }},
		{"other header value", func(h *authv3.AttributeContext_HttpRequest) { h.Headers["x-tenant"] = "b" }},
		{"header missing", func(h *authv3.AttributeContext_HttpRequest) { delete(h.Headers, "x-tenant") }},
		{"other query", func(h *authv3.AttributeContext_HttpRequest) { h.Path = "/orders/42?v=2" }},
		{"other host", func(h *authv3.AttributeContext_HttpRequest) { h.Host = "evil.example.com" }},
	} {
		if allowed(t, r.svc, req(10+i, tc.edit)) {
			t.Errorf("%s: allowed from another request's decision", tc.name)
		}
	}
	if got := decisions(t, reg); got["evaluated"] != 6 || got["shared_cache"] != 1 {
		t.Fatalf("decisions %v: each differing request should have been evaluated", got)
	}
}
