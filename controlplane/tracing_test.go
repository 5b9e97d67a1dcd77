package controlplane

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/scopegate/scopegate/internal/tracing"
)

// Each reload is a trace: the reload span, with translation and the push to the fleets
// as its children; a rejected config marks the reload span as an error.
func TestReloadIsTraced(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := tracing.NewSyncForTest(exp, 1)
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	h := start(t, testConfig(cfgOpt{}), func(o *Options) { o.Tracer = tp.Tracer("test") })

	byName := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		byName[s.Name] = s
	}
	reload, ok := byName["scopegate.xds.reload"]
	if !ok {
		t.Fatalf("no reload span among %v", exp.GetSpans().Snapshots())
	}
	for _, child := range []string{"scopegate.xds.translate", "scopegate.xds.push"} {
		c, ok := byName[child]
		if !ok || c.Parent.SpanID() != reload.SpanContext.SpanID() {
			t.Fatalf("%s: present %v, not a child of the reload span", child, ok)
		}
	}

	exp.Reset()
	h.writeFile(strings.Replace(testConfig(cfgOpt{}), "upstreams:", "upstreams: oops\nbad:", 1))
	if err := h.svc.Reload(context.Background()); err == nil {
		t.Fatal("a broken config reloaded")
	}
	var rejected bool
	for _, s := range exp.GetSpans() {
		if s.Name == "scopegate.xds.reload" && s.Status.Code.String() == "Error" {
			rejected = true
		}
	}
	if !rejected {
		t.Fatalf("no reload span with an error status for the rejected config: %v", exp.GetSpans().Snapshots())
	}
}
