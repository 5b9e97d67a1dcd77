package check_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/decisionlog"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/routes"
	"github.com/scopegate/scopegate/internal/checkreq"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
	"github.com/scopegate/scopegate/policies"
)

// meshRoutes is the route table of controlplane/translate/testdata/in/matchers.yaml: the
// same file scopegate xds translates (its golden output shows what Envoy gets).
const meshRoutes = "../../controlplane/translate/testdata/in/matchers.yaml"

func meshTable(t testing.TB) *routes.Live {
	t.Helper()
	tb, err := config.LoadRouteTable(meshRoutes)
	if err != nil {
		t.Fatal(err)
	}
	return routes.NewLive(tb)
}

// istio is a CheckRequest shaped as an Istio ingress gateway's or sidecar's Envoy sends it:
// no context extensions (AuthorizationPolicy can't set them), the x-forwarded-* headers the
// gateway adds, and, from a sidecar, the peers' SPIFFE IDs.
func istio(tok, method, host, path string, headers map[string]string, sidecar bool) *authv3.CheckRequest {
	h := map[string]string{
		"user-agent": "curl/8.5.0", "accept": "*/*", "x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7",
		"x-envoy-external-address": "203.0.113.7", "x-request-id": "9a1b2c3d-0000-4000-8000-000000000001",
		"x-envoy-attempt-count": "1", "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7", "x-b3-spanid": "e457b5a2e4d86bd1", "x-b3-sampled": "1",
	}
	if tok != "" {
		h["authorization"] = "Bearer " + tok
	}
	for k, v := range headers {
		h[k] = v
	}
	r := checkreq.Request{Method: method, Path: path, Host: host, Protocol: "HTTP/2", Source: "10.244.1.17:51234", Headers: h}
	if sidecar {
		h["x-forwarded-client-cert"] = `By=spiffe://cluster.local/ns/shop/sa/orders-api;Hash=8a3f;Subject="";URI=spiffe://cluster.local/ns/shop/sa/web`
		r.SourcePrincipal = "spiffe://cluster.local/ns/shop/sa/web"
		r.DestinationPrincipal = "spiffe://cluster.local/ns/shop/sa/orders-api"
	}
	return r.MustBuild()
}

type meshAnswer struct {
	code   codes.Code
	status int
	reason string
	route  string
	resp   *authv3.CheckResponse
}

// ask sends req and reads the answer and the decision log's line for it.
func ask(t *testing.T, o check.Options, req *authv3.CheckRequest) meshAnswer {
	t.Helper()
	var logs bytes.Buffer
	dlog := decisionlog.New(&logs, 1, 0)
	o.DecisionLog = dlog
	resp, err := check.New(o).Check(context.Background(), req)
	if err == nil {
		resp, err = check.Decoded(resp)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := dlog.Close(); err != nil {
		t.Fatal(err)
	}
	var line struct {
		Route, Reason string
		Status        int
	}
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, logs.String())
	}
	a := meshAnswer{code: codes.Code(resp.GetStatus().GetCode()), status: 200, reason: line.Reason, route: line.Route, resp: resp}
	if d := resp.GetDeniedResponse(); d != nil {
		a.status = int(d.GetStatus().GetCode())
	}
	return a
}

func challengeScope(resp *authv3.CheckResponse) string {
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if v := h.GetHeader().GetValue(); h.GetHeader().GetKey() == "www-authenticate" && strings.Contains(v, "insufficient_scope") {
			_, rest, _ := strings.Cut(v, `scope="`)
			scope, _, _ := strings.Cut(rest, `"`)
			return scope
		}
	}
	return ""
}

// Istio-shaped CheckRequests against a table with overlapping prefixes, wildcard hosts,
// regex and exact routes: each gets the route (and so the scopes) Envoy would pick, proven
// both ways: a token with exactly that route's scopes passes, one with every other scope of
// the table is refused with that route's scopes in the challenge. No route: 403 no_route.
func TestIstioShapedRequests(t *testing.T) {
	k := testissuer.NewKey("k1", "ES256")
	r := newRig(t, []*testissuer.Key{k}, "token-only", 1000)
	o := check.Options{Verifier: r.verifier, Headers: r.headers, Routes: meshTable(t), DenyUnmatched: true, Policy: defaultPolicy(t)}
	all := "orders:admin orders:read orders:v2 orders:write items:read beta reports:read tenant api internal legacy"
	tests := []struct {
		name, method, host, path string
		headers                  map[string]string
		sidecar                  bool
		route, scopes            string // "" scopes: a public route
	}{
		{"exact beats the later prefix", "GET", "api.example.com", "/orders/admin", nil, false, "orders-admin", "orders:admin"},
		{"header route before the method route", "POST", "api.example.com", "/orders/7", map[string]string{"x-api-version": "2"}, true, "orders-v2", "orders:read orders:v2"},
		{"method route", "DELETE", "api.example.com", "/orders/7?force=1", nil, true, "orders-write", "orders:write"},
		{"segment prefix", "GET", "API.Example.com", "/orders", nil, false, "orders-read", "orders:read"},
		{"segment prefix takes no sibling", "GET", "api.example.com", "/ordersx", nil, false, "rest", "api"},
		{"regex", "GET", "api.example.com", "/items/12/reviews", nil, true, "order-items", "items:read"},
		{"regex is whole-path", "GET", "api.example.com", "/items/12/reviewsx", nil, true, "rest", "api"},
		{"case-insensitive prefix", "GET", "api.example.com:8443", "/REPORTS/q1", nil, false, "reports", "reports:read"},
		{"headers all match", "GET", "api.example.com", "/t/1", map[string]string{"x-tenant": "abc-12", "x-tenant-tier": "gold+", "x-region": "west-eu"}, true, "tenant", "tenant"},
		{"a forbidden header fails the route", "GET", "api.example.com", "/t/1", map[string]string{"x-tenant": "abc-12", "x-tenant-tier": "gold+", "x-region": "west-eu", "x-debug": "1"}, true, "rest", "api"},
		{"inverted header", "GET", "api.example.com", "/beta/x", map[string]string{"x-beta": "1", "user-agent": "SomeBot/2"}, false, "rest", "api"},
		{"present header", "GET", "api.example.com", "/beta/x", map[string]string{"x-beta": "1"}, false, "beta", "beta"},
		{"longest suffix wildcard", "GET", "ops-internal.example.com", "/anything", nil, true, "internal", "internal"},
		{"prefix wildcard", "GET", "legacy.example.net", "/v1/x", nil, false, "legacy", "legacy"},
		{"public route, exact", "GET", "api.example.com", "/healthz", nil, false, "health", ""},
		{"public route under *", "GET", "other.test", "/HEALTHZ", nil, false, "default-health", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.scopes == "" {
				a := ask(t, o, istio("", tt.method, tt.host, tt.path, tt.headers, tt.sidecar))
				if a.code != codes.OK || a.route != tt.route {
					t.Fatalf("public route %s: %+v", tt.route, a)
				}
				if got := a.resp.GetOkResponse().GetHeadersToRemove(); len(got) == 0 {
					t.Errorf("a public route's answer must remove the identity headers: %v", a.resp)
				}
				return
			}
			good := r.is.Standard("orders-api", "alice", tt.scopes, time.Hour)
			if tt.route == "orders-admin" {
				good["cnf"] = map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}
			}
			a := ask(t, o, istio(testissuer.Sign(k, good, nil), tt.method, tt.host, tt.path, tt.headers, tt.sidecar))
			if a.route != tt.route {
				t.Fatalf("route %q, want %q (%+v)", a.route, tt.route, a)
			}
			if tt.route == "orders-admin" {
				// binding: required came with the route: a DPoP-bound token over Bearer is refused.
				if a.status != 401 {
					t.Fatalf("the route's binding was not applied: %+v", a)
				}
				return
			}
			if a.code != codes.OK {
				t.Fatalf("a token with exactly the route's scopes was refused: %+v", a)
			}
			var others []string
			for _, s := range strings.Fields(all) {
				if !strings.Contains(" "+tt.scopes+" ", " "+s+" ") {
					others = append(others, s)
				}
			}
			bad := r.is.Standard("orders-api", "bob", strings.Join(others, " "), time.Hour)
			a = ask(t, o, istio(testissuer.Sign(k, bad, nil), tt.method, tt.host, tt.path, tt.headers, tt.sidecar))
			if tt.route == "beta" {
				// mode: shadow came with the route: the denial is logged, the request let through.
				if a.code != codes.OK || a.reason != "insufficient_scope" {
					t.Fatalf("shadow route: %+v", a)
				}
				return
			}
			if a.status != 403 || challengeScope(a.resp) != tt.scopes {
				t.Fatalf("without the route's scopes: status %d, challenge scope %q, want 403 and %q", a.status, challengeScope(a.resp), tt.scopes)
			}
		})
	}

	t.Run("no route matched", func(t *testing.T) {
		tok := testissuer.Sign(k, r.is.Standard("orders-api", "alice", all, time.Hour), nil)
		a := ask(t, o, istio(tok, "GET", "legacy.example.net", "/v2/x", nil, false))
		if a.status != 403 || a.reason != contract.ReasonNoRoute || !strings.Contains(a.resp.GetDeniedResponse().GetBody(), "no route matched") {
			t.Fatalf("unmatched: %+v", a)
		}
		tokenOnly := o
		tokenOnly.DenyUnmatched = false
		if a := ask(t, tokenOnly, istio(tok, "GET", "legacy.example.net", "/v2/x", nil, false)); a.code != codes.OK {
			t.Fatalf("unmatched, token_only: %+v", a)
		}
	})
	t.Run("context extensions win", func(t *testing.T) {
		tok := testissuer.Sign(k, r.is.Standard("orders-api", "alice", "orders:admin", time.Hour), nil)
		req := istio(tok, "GET", "api.example.com", "/orders/7", nil, false)
		req.Attributes.ContextExtensions = map[string]string{contract.ExtRoute: "from-envoy", contract.ExtScopes: "orders:admin"}
		if a := ask(t, o, req); a.code != codes.OK || a.route != "from-envoy" {
			t.Fatalf("the request's own route contract must win over the table: %+v", a)
		}
	})
	t.Run("metadata document served by authz", func(t *testing.T) {
		a := ask(t, o, istio("", "GET", "api.example.com", "/.well-known/oauth-protected-resource", nil, false))
		d := a.resp.GetDeniedResponse()
		if a.status != 200 || !strings.Contains(d.GetBody(), `"resource":"https://api.example.com"`) || !strings.Contains(d.GetBody(), `"orders:v2"`) {
			t.Fatalf("metadata: %+v", a)
		}
	})
	t.Run("401 names the route's metadata", func(t *testing.T) {
		a := ask(t, o, istio("", "GET", "api.example.com", "/orders", nil, false))
		if a.status != 401 || !strings.Contains(wwwAuthenticate(a.resp)[0], `resource_metadata="https://api.example.com/.well-known/oauth-protected-resource"`) {
			t.Fatalf("missing token: %+v %v", a, wwwAuthenticate(a.resp))
		}
	})
}

// A rule can require both a workload identity (Istio's mutual TLS) and a token scope.
func TestWorkloadIdentityInPolicy(t *testing.T) {
	const src = `package scopegate.authz

decision := {"allow": true} if {
	input.source.principal == "spiffe://cluster.local/ns/shop/sa/web"
	input.destination.principal == "spiffe://cluster.local/ns/shop/sa/orders-api"
	every s in input.route.scopes { s in input.token.scopes }
} else := {"allow": false, "status": 403, "reason": "workload_or_scope"}
`
	r, eng, _, k := policyRig(t, src)
	svc := check.New(check.Options{Verifier: r.verifier, Policy: eng, Headers: identityHeaders, Routes: meshTable(t), DenyUnmatched: true})
	tok := func(scope string) string {
		return testissuer.Sign(k, r.is.Standard("orders-api", "alice", scope, time.Hour), nil)
	}
	if !allowed(t, svc, istio(tok("orders:read"), "GET", "api.example.com", "/orders/1", nil, true)) {
		t.Error("the web workload with orders:read was refused")
	}
	if allowed(t, svc, istio(tok("orders:read"), "GET", "api.example.com", "/orders/1", nil, false)) {
		t.Error("allowed without a workload identity")
	}
	if allowed(t, svc, istio(tok("orders:write"), "GET", "api.example.com", "/orders/1", nil, true)) {
		t.Error("the web workload without the route's scope was allowed")
	}
	other := istio(tok("orders:read"), "GET", "api.example.com", "/orders/1", nil, true)
	other.Attributes.Source.Principal = "spiffe://cluster.local/ns/shop/sa/batch"
	if allowed(t, svc, other) {
		t.Error("another workload shared the web workload's decision")
	}
}

// BenchmarkRouteTable is what mesh mode adds to a warm Check: the same warm request (a
// cached token, the built-in policy's decision reused) decided with its route in the context
// extensions ("context-extensions") and without, matched in a table of 1,000 routes
// ("route-table-1000"). The two alternate, eight rounds each (-count repeats a sub-benchmark
// back to back, which a noisy machine skews): compare the rounds pairwise.
func BenchmarkRouteTable(b *testing.B) {
	k := testissuer.NewKey("k1", "ES256")
	base := newRig(b, []*testissuer.Key{k}, "token-only", 1000)
	table := routes.NewLive(bigMeshTable(b))
	pol := defaultPolicy(b)
	mesh := check.New(check.Options{Verifier: base.verifier, Headers: base.headers, Policy: pol, Routes: table, DenyUnmatched: true})
	plain := check.New(check.Options{Verifier: base.verifier, Headers: base.headers, Policy: pol})
	tok := base.token(k, 1, "svc997:read")
	withExt := checkreq.Request{Path: "/svc997/items/42?expand=1", Host: "api9.example.com", Protocol: "HTTP/2",
		Headers:           map[string]string{"authorization": "Bearer " + tok, "user-agent": "curl/8.5.0", "x-request-id": "1"},
		ContextExtensions: map[string]string{contract.ExtRoute: "svc997", contract.ExtScopes: "svc997:read"}}.MustBuild()
	without := checkreq.Request{Path: "/svc997/items/42?expand=1", Host: "api9.example.com", Protocol: "HTTP/2",
		Headers: map[string]string{"authorization": "Bearer " + tok, "user-agent": "curl/8.5.0", "x-request-id": "1"}}.MustBuild()
	ctx := context.Background()
	for round := range 8 {
		for _, c := range []struct {
			name string
			svc  *check.Service
			req  *authv3.CheckRequest
		}{{"context-extensions", plain, withExt}, {"route-table-1000", mesh, without}} {
			mustAllow(b, must(c.svc.Check(ctx, c.req)))
			b.Run(c.name+"/round-"+strconv.Itoa(round), func(b *testing.B) {
				b.ReportAllocs()
				cpu := int64(processCPU())
				for b.Loop() {
					c.svc.Check(ctx, c.req)
				}
				// CPU time is steadier than wall time on a machine others share.
				b.ReportMetric(float64(int64(processCPU())-cpu)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// bigMeshTable: 10 virtual hosts of 100 routes each (1,000), every route a segment prefix
// with its own scope; the benchmark's request takes the 98th route of the last host.
func bigMeshTable(b *testing.B) *routes.Table {
	var in []routes.VirtualHost
	for v := range 10 {
		vh := routes.VirtualHost{Name: "vh" + strconv.Itoa(v), Domains: []string{"api" + strconv.Itoa(v) + ".example.com"}}
		for i := range 100 {
			n := v*100 + i
			name := "svc" + strconv.Itoa(n)
			vh.Routes = append(vh.Routes, routes.Route{Name: name, Path: routes.PathMatch{Kind: routes.PathSeparatedPrefix, Value: "/" + name},
				Extensions: map[string]string{contract.ExtRoute: name, contract.ExtScopes: name + ":read"}})
		}
		in = append(in, vh)
	}
	tb, err := routes.New(in)
	if err != nil {
		b.Fatal(err)
	}
	return tb
}

// defaultPolicy is the built-in policy.
func defaultPolicy(tb testing.TB) *policy.Engine {
	return mustEngine(tb, context.Background(), policy.Options{FS: policies.Default, EvalTimeout: 100 * time.Millisecond})
}
