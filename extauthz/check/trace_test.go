package check_test

import (
	"context"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
	"github.com/scopegate/scopegate/internal/tracing"
)

const (
	traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	spanID  = "00f067aa0ba902b7"
)

// A Check joins the trace Envoy forwarded (W3C or B3), with child spans for verification and
// the policy; attributes never hold the token.
func TestTracing(t *testing.T) {
	rs := testissuer.NewKey("rs", "RS256")
	exp := tracetest.NewInMemoryExporter()
	tp := tracing.NewSyncForTest(exp, 0) // ratio 0: only a sampled parent makes spans
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	r := newRig(t, []*testissuer.Key{rs}, "default-policy", 100, func(o *check.Options) { o.Tracer = tp.Tracer("test") })

	for _, tc := range []struct {
		name    string
		headers map[string]string
		spans   bool
	}{
		{"w3c sampled", map[string]string{"traceparent": "00-" + traceID + "-" + spanID + "-01"}, true},
		{"b3 single header", map[string]string{"b3": traceID + "-" + spanID + "-1"}, true},
		{"b3 multi header", map[string]string{"x-b3-traceid": traceID, "x-b3-spanid": spanID, "x-b3-sampled": "1"}, true},
		{"w3c not sampled", map[string]string{"traceparent": "00-" + traceID + "-" + spanID + "-00"}, false},
		{"no trace context, ratio 0", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp.Reset()
			tok := r.token(rs, 1, "orders:read")
			mustAllowT(t, r, requestWith(tok, tc.headers))
			spans := exp.GetSpans()
			if !tc.spans {
				if len(spans) != 0 {
					t.Fatalf("%d spans for a trace that is not sampled", len(spans))
				}
				return
			}
			byName := map[string]tracetest.SpanStub{}
			for _, s := range spans {
				byName[s.Name] = s
				for _, a := range s.Attributes {
					if v := a.Value.String(); strings.Contains(v, tok) || strings.Contains(v, "Bearer") || strings.Contains(v, tok[:20]) {
						t.Fatalf("span %s attribute %s holds the token", s.Name, a.Key)
					}
				}
			}
			root, ok := byName["scopegate.Check"]
			if !ok {
				t.Fatalf("no Check span among %d", len(spans))
			}
			if root.SpanContext.TraceID().String() != traceID || root.Parent.SpanID().String() != spanID || !root.Parent.IsRemote() {
				t.Fatalf("Check span: trace %s parent %s (remote %v); want trace %s parent %s", root.SpanContext.TraceID(), root.Parent.SpanID(), root.Parent.IsRemote(), traceID, spanID)
			}
			attrs := map[string]string{}
			for _, a := range root.Attributes {
				attrs[string(a.Key)] = a.Value.String()
			}
			if attrs["scopegate.route"] != "orders-read" || attrs["scopegate.issuer"] != "demo" || attrs["scopegate.decision"] != "allow" {
				t.Fatalf("Check span attributes: %v", attrs)
			}
			for _, child := range []string{"scopegate.verify_token", "scopegate.policy"} {
				c, ok := byName[child]
				if !ok || c.Parent.SpanID() != root.SpanContext.SpanID() {
					t.Fatalf("%s: present %v, parent %s, want the Check span %s", child, ok, c.Parent.SpanID(), root.SpanContext.SpanID())
				}
			}
		})
	}
}

func mustAllowT(t *testing.T, r *rig, req *authv3.CheckRequest) {
	t.Helper()
	resp, err := r.svc.Check(context.Background(), req)
	if err != nil || resp.GetDeniedResponse() != nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("not allowed: %v %v", resp, err)
	}
}
