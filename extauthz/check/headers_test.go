package check_test

import (
	"context"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
	"github.com/scopegate/scopegate/internal/tracing"
)

// With encode_raw_headers, Envoy sends header_map instead of headers: every Authorization
// value apart, possibly as raw bytes. One value is read like the headers map; two are a 400.
func TestAuthorizationFromHeaderMap(t *testing.T) {
	k := testissuer.NewKey("k1", "ES256")
	r := newRig(t, []*testissuer.Key{k}, "token-only", 100)
	tok := r.token(k, 1, "orders:read")
	raw := func(values ...*corev3.HeaderValue) *authv3.CheckRequest {
		req := request(tok)
		req.Attributes.Request.Http.Headers = nil
		req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: append([]*corev3.HeaderValue{
			{Key: ":path", RawValue: []byte("/orders/42")}, {Key: "user-agent", RawValue: []byte("curl/8")},
		}, values...)}
		return req
	}
	tests := []struct {
		name   string
		req    *authv3.CheckRequest
		status int32 // 0: allowed
	}{
		{"raw value", raw(&corev3.HeaderValue{Key: "authorization", RawValue: []byte("Bearer " + tok)}), 0},
		{"value", raw(&corev3.HeaderValue{Key: "authorization", Value: "Bearer " + tok}), 0},
		{"key in another case", raw(&corev3.HeaderValue{Key: "Authorization", RawValue: []byte("Bearer " + tok)}), 0},
		{"two values", raw(&corev3.HeaderValue{Key: "authorization", RawValue: []byte("Bearer " + tok)},
			&corev3.HeaderValue{Key: "authorization", RawValue: []byte("Bearer other")}), 400},
		{"none", raw(), 401},
	}
	for _, tt := range tests {
		resp, err := r.svc.Check(context.Background(), tt.req)
		if err != nil {
			t.Fatal(err)
		}
		got := resp.GetDeniedResponse().GetStatus().GetCode()
		if int32(got) != tt.status {
			t.Errorf("%s: status %d, want %d (%v)", tt.name, got, tt.status, resp)
		}
	}
}

// toHeaderMap moves req's headers into header_map, as Envoy sends them with
// encode_raw_headers: each value apart, as raw bytes, names as the client wrote them.
func toHeaderMap(req *authv3.CheckRequest, extra ...*corev3.HeaderValue) *authv3.CheckRequest {
	h := req.Attributes.Request.Http
	hm := &corev3.HeaderMap{}
	for k, v := range h.Headers {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: strings.ToUpper(k[:1]) + k[1:], RawValue: []byte(v)})
	}
	hm.Headers = append(hm.Headers, extra...)
	h.Headers, h.HeaderMap = nil, hm
	return req
}

// One header view: with encode_raw_headers the policy sees header_map's headers (not an
// empty headers object), and so do the DPoP proof check and the trace context, exactly as
// for the headers map.
func TestHeaderMapIsOneView(t *testing.T) {
	t.Run("policy input", func(t *testing.T) {
		r, _, _, k := policyRig(t, `package scopegate.authz

decision := {"allow": input.request.headers["x-tenant"] == "acme,beta"}
`)
		tok := r.token(k, 1, "orders:read")
		req := toHeaderMap(requestWith(tok, nil),
			&corev3.HeaderValue{Key: "X-Tenant", RawValue: []byte("acme")}, &corev3.HeaderValue{Key: "x-tenant", RawValue: []byte("beta")})
		if !allowed(t, r.svc, req) {
			t.Fatal("the policy did not see header_map's x-tenant (repeated values joined with \",\", as Envoy's headers map has them)")
		}
		if allowed(t, r.svc, toHeaderMap(requestWith(tok, nil))) {
			t.Fatal("allowed without the header")
		}
	})
	t.Run("DPoP proof", func(t *testing.T) {
		b := newBindingRig(t)
		bound := b.token(map[string]any{"jkt": b.jkt})
		req := toHeaderMap(dpopRequest("DPoP", bound, nil, b.proof(t, b.holder, "GET", "https://api.example.com/orders/1", bound, "")))
		if code, resp := answer(t, b.svc, req); code != codes.OK {
			t.Fatalf("DPoP from header_map: %v", resp)
		}
		two := toHeaderMap(dpopRequest("DPoP", bound, nil, b.proof(t, b.holder, "GET", "https://api.example.com/orders/1", bound, ""),
			b.proof(t, b.holder, "GET", "https://api.example.com/orders/1", bound, "")))
		if code, _ := answer(t, b.svc, two); code != codes.Unauthenticated {
			t.Fatalf("two proofs from header_map: %v", code)
		}
	})
	t.Run("trace context", func(t *testing.T) {
		rs := testissuer.NewKey("rs", "RS256")
		exp := tracetest.NewInMemoryExporter()
		tp := tracing.NewSyncForTest(exp, 0)
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		r := newRig(t, []*testissuer.Key{rs}, "default-policy", 100, func(o *check.Options) { o.Tracer = tp.Tracer("test") })
		tok := r.token(rs, 1, "orders:read")
		mustAllowT(t, r, toHeaderMap(requestWith(tok, map[string]string{"traceparent": "00-" + traceID + "-" + spanID + "-01"})))
		var joined bool
		for _, s := range exp.GetSpans() {
			if s.Name == "scopegate.Check" && s.SpanContext.TraceID().String() == traceID && s.Parent.SpanID().String() == spanID {
				joined = true
			}
		}
		if !joined {
			t.Fatalf("the Check did not join header_map's trace context (%d spans)", len(exp.GetSpans()))
		}
	})
}
