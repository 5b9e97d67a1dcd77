package tracing

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestValidate(t *testing.T) {
	ratio := func(f float64) *float64 { return &f }
	for _, tc := range []struct {
		name string
		c    Config
		want string
	}{
		{"off", Config{}, ""},
		{"plain", Config{OTLPEndpoint: "http://collector:4317", SampleRatio: ratio(0.5)}, ""},
		{"no scheme", Config{OTLPEndpoint: "collector:4317"}, "tracing.otlp_endpoint"},
		{"ratio", Config{SampleRatio: ratio(-1)}, "tracing.sample_ratio"},
	} {
		err := tc.c.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// Envoy's headers carry W3C or B3 context; W3C wins when both are there.
func TestPropagator(t *testing.T) {
	const w3c, b3 = "4bf92f3577b34da6a3ce929d0e0e4736", "80f198ee56343ba864fe8b2a57d3eff7"
	for _, tc := range []struct {
		name    string
		h       Headers
		trace   string
		sampled bool
	}{
		{"w3c", Headers{"traceparent": "00-" + w3c + "-00f067aa0ba902b7-01"}, w3c, true},
		{"b3", Headers{"b3": b3 + "-e457b5a2e4d86bd1-0"}, b3, false},
		{"both: w3c wins", Headers{"traceparent": "00-" + w3c + "-00f067aa0ba902b7-01", "b3": b3 + "-e457b5a2e4d86bd1-1"}, w3c, true},
	} {
		sc := trace.SpanContextFromContext(Propagator.Extract(context.Background(), tc.h))
		if sc.TraceID().String() != tc.trace || sc.IsSampled() != tc.sampled {
			t.Errorf("%s: trace %s sampled %v, want %s %v", tc.name, sc.TraceID(), sc.IsSampled(), tc.trace, tc.sampled)
		}
	}
	if p, err := New(context.Background(), Config{}, "x"); p != nil || err != nil || p.Tracer("x") != nil {
		t.Fatal("no endpoint must mean no provider and a nil tracer")
	}
}

// NotSampled agrees with the propagators wherever it answers true, and leaves every other
// header to them.
func TestNotSampled(t *testing.T) {
	const id, parent, id64 = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "a3ce929d0e0e4736"
	for _, tc := range []struct {
		name string
		h    Headers
		want bool
	}{
		{"w3c unsampled", Headers{"traceparent": "00-" + id + "-" + parent + "-00"}, true},
		{"w3c other flags, sampled bit clear", Headers{"traceparent": "00-" + id + "-" + parent + "-02"}, true},
		{"w3c sampled", Headers{"traceparent": "00-" + id + "-" + parent + "-01"}, false},
		{"w3c sampled with other flags", Headers{"traceparent": "00-" + id + "-" + parent + "-03"}, false},
		{"w3c another version", Headers{"traceparent": "01-" + id + "-" + parent + "-00"}, false},
		{"w3c malformed", Headers{"traceparent": "00-" + id + "-" + parent + "-0g"}, false},
		{"w3c upper case", Headers{"traceparent": "00-" + strings.ToUpper(id) + "-" + parent + "-00"}, false},
		{"w3c wins over b3", Headers{"traceparent": "00-" + id + "-" + parent + "-01", "b3": id + "-" + parent + "-0"}, false},
		{"b3 single unsampled", Headers{"b3": id + "-" + parent + "-0"}, true},
		{"b3 single 64-bit id with parent", Headers{"b3": id64 + "-" + parent + "-0-" + parent}, true},
		{"b3 single sampled", Headers{"b3": id + "-" + parent + "-1"}, false},
		{"b3 single debug", Headers{"b3": id + "-" + parent + "-d"}, false},
		{"b3 single deny only", Headers{"b3": "0"}, false},
		{"b3 single no sampling state", Headers{"b3": id + "-" + parent}, false},
		{"b3 multi unsampled", Headers{"x-b3-traceid": id, "x-b3-spanid": parent, "x-b3-sampled": "0"}, true},
		{"b3 multi sampled", Headers{"x-b3-traceid": id, "x-b3-spanid": parent, "x-b3-sampled": "1"}, false},
		{"b3 multi debug", Headers{"x-b3-traceid": id, "x-b3-spanid": parent, "x-b3-sampled": "0", "x-b3-flags": "1"}, false},
		{"b3 multi no span id", Headers{"x-b3-traceid": id, "x-b3-sampled": "0"}, false},
		{"nothing", Headers{}, false},
	} {
		if got := NotSampled(tc.h); got != tc.want {
			t.Errorf("%s: NotSampled = %v, want %v", tc.name, got, tc.want)
		}
		if tc.want {
			sc := trace.SpanContextFromContext(Propagator.Extract(context.Background(), tc.h))
			if !sc.IsValid() || sc.IsSampled() {
				t.Errorf("%s: the propagator reads valid %v sampled %v; NotSampled must agree", tc.name, sc.IsValid(), sc.IsSampled())
			}
		}
	}
}

// BenchmarkExtract is what an unsampled Check pays for tracing: reading the trace context.
func BenchmarkExtract(b *testing.B) {
	h := Headers{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "user-agent": "curl/8.5.0",
		"accept": "*/*", "x-request-id": "7f8e5b2c-1d3a-4e5f-9a8b-0c1d2e3f4a5b", ":path": "/orders/42", ":method": "GET"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if trace.SpanContextFromContext(Propagator.Extract(ctx, h)).IsSampled() {
			b.Fatal("sampled")
		}
	}
}

// BenchmarkNotSampled is what an unsampled traced Check pays instead of BenchmarkExtract.
func BenchmarkNotSampled(b *testing.B) {
	for _, h := range []Headers{
		{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "user-agent": "curl/8.5.0"},
		{"x-b3-traceid": "4bf92f3577b34da6a3ce929d0e0e4736", "x-b3-spanid": "00f067aa0ba902b7", "x-b3-sampled": "0", "user-agent": "curl/8.5.0"},
	} {
		name := "w3c"
		if _, ok := h["traceparent"]; !ok {
			name = "b3-multi"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !NotSampled(h) {
					b.Fatal("sampled")
				}
			}
		})
	}
}
