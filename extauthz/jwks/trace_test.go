package jwks

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/scopegate/scopegate/internal/testing/testissuer"
	"github.com/scopegate/scopegate/internal/tracing"
)

// An unknown kid's refresh is a child span of the traced request that waits for it.
func TestUnknownKIDRefreshIsTraced(t *testing.T) {
	k1, k2 := testissuer.NewKey("k1", "ES256"), testissuer.NewKey("k2", "ES256")
	is := testissuer.New(k1)
	defer is.Close()
	exp := tracetest.NewInMemoryExporter()
	tp := tracing.NewSyncForTest(exp, 1)
	defer tp.Shutdown(context.Background())
	tracer := tp.Tracer("test")
	s, ctx := startSource(t, Options{Name: "demo", Issuer: is.Issuer, URL: is.JWKSURL(), RefreshInterval: time.Hour,
		FetchTimeout: 5 * time.Second, MaxBytes: 1 << 20, Tracer: tracer})

	if _, err := s.Lookup(ctx, "k1", "ES256"); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("a known kid made %d spans", n)
	}
	is.SetKeys(k1, k2)
	pctx, parent := tracer.Start(ctx, "check")
	if _, err := s.Lookup(pctx, "k2", "ES256"); err != nil {
		t.Fatal(err)
	}
	parent.End()
	var fetch *tracetest.SpanStub
	for _, sp := range exp.GetSpans() {
		if sp.Name == "scopegate.jwks_fetch" {
			fetch = &sp
		}
	}
	if fetch == nil || fetch.Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("no jwks_fetch child span: %v", exp.GetSpans().Snapshots())
	}
}
