// Package tracing sets up OpenTelemetry tracing for scopegate's services: an OTLP/gRPC
// exporter, a parent-based ratio sampler, and the propagators Envoy uses (W3C traceparent,
// B3). Tracing is off unless an endpoint is configured; then the tracer is nil and callers
// skip every span, so the hot paths pay nothing.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/scopegate/scopegate/internal/version"
)

// Config is the `tracing` section of the authz and xds configs.
type Config struct {
	// OTLPEndpoint is the collector's OTLP/gRPC URL: http://host:4317 (plain) or
	// https://host:4317 (TLS). Empty: tracing is off.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// SampleRatio is the fraction of traces started here that are sampled (default 0.1); a
	// request that arrives with a trace context follows its caller's sampling decision.
	SampleRatio *float64 `yaml:"sample_ratio"`
}

// DefaultSampleRatio applies when sample_ratio is absent.
const DefaultSampleRatio = 0.1

// Validate names the field at fault.
func (c *Config) Validate() error {
	var errs []error
	if c.OTLPEndpoint != "" {
		if u, err := url.Parse(c.OTLPEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("tracing.otlp_endpoint: want http://host:port or https://host:port, got %q", c.OTLPEndpoint))
		}
	}
	if r := c.SampleRatio; r != nil && (*r < 0 || *r > 1) {
		errs = append(errs, fmt.Errorf("tracing.sample_ratio: %v is out of range (0 to 1)", *r))
	}
	return errors.Join(errs...)
}

func (c *Config) ratio() float64 {
	if c.SampleRatio == nil {
		return DefaultSampleRatio
	}
	return *c.SampleRatio
}

// Propagator reads (and writes) trace context as Envoy forwards it: W3C traceparent and
// tracestate, and B3 (single or multi-header). W3C wins when a request carries both.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(b3.New(), propagation.TraceContext{})

// NotSampled reports, without extracting the context, that a request's trace context says
// "not sampled": a W3C traceparent of version 00 with the sampled flag clear, or (with no
// traceparent) a B3 context, single or multi-header, with a trace id, a span id and sampling
// state 0. Envoy is not sampling such a trace, so a parent-based sampler records nothing under
// it and the Check skips tracing altogether (no extraction, no allocation). Anything else
// answers false and goes through the propagators, which decide.
func NotSampled(h Headers) bool {
	if tp, ok := h["traceparent"]; ok {
		// 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>
		if len(tp) != 55 || tp[:3] != "00-" || tp[35] != '-' || tp[52] != '-' ||
			!isHex(tp[3:35]) || !isHex(tp[36:52]) || !isHex(tp[53:55]) {
			return false
		}
		return hexValue(tp[54])&1 == 0
	}
	if b3, ok := h["b3"]; ok {
		// <16 or 32 hex trace id>-<16 hex span id>-0[-<16 hex parent span id>]
		i := strings.IndexByte(b3, '-')
		if (i != 16 && i != 32) || !isHex(b3[:i]) || len(b3) < i+19 || b3[i+17] != '-' || !isHex(b3[i+1:i+17]) || b3[i+18] != '0' {
			return false
		}
		rest := b3[i+19:]
		return rest == "" || (len(rest) == 17 && rest[0] == '-' && isHex(rest[1:]))
	}
	id, span := h["x-b3-traceid"], h["x-b3-spanid"]
	_, flags := h["x-b3-flags"]
	return h["x-b3-sampled"] == "0" && !flags && (len(id) == 16 || len(id) == 32) && isHex(id) && len(span) == 16 && isHex(span)
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func hexValue(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

// Provider is a configured tracer provider; a nil *Provider is tracing off.
type Provider struct {
	tp *sdktrace.TracerProvider
}

// New starts the exporter for service (e.g. "scopegate-authz"); it returns nil when tracing
// is off.
func New(ctx context.Context, c Config, service string) (*Provider, error) {
	if c.OTLPEndpoint == "" {
		return nil, nil
	}
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(c.OTLPEndpoint))
	if err != nil {
		return nil, fmt.Errorf("tracing.otlp_endpoint: %w", err)
	}
	return NewWithExporter(exp, c, service), nil
}

// NewWithExporter is New with a given exporter (tests pass an in-memory one).
func NewWithExporter(exp sdktrace.SpanExporter, c Config, service string) *Provider {
	res := resource.NewSchemaless(semconv.ServiceName(service), semconv.ServiceVersion(version.Version))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.ratio()))),
	)
	return &Provider{tp: tp}
}

// NewSyncForTest exports every span as it ends (in-memory exporter tests).
func NewSyncForTest(exp sdktrace.SpanExporter, ratio float64) *Provider {
	return &Provider{tp: sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))))}
}

// Tracer is the named tracer, or nil when tracing is off.
func (p *Provider) Tracer(name string) trace.Tracer {
	if p == nil {
		return nil
	}
	return p.tp.Tracer(name)
}

// Shutdown flushes and stops the exporter.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	return p.tp.Shutdown(ctx)
}

// Headers is a read-only carrier over Envoy's CheckRequest headers (names lower-cased).
type Headers map[string]string

// Get returns the header. Envoy lower-cases header names and the propagators ask with
// lower-case names, so one lookup does.
func (h Headers) Get(key string) string { return h[key] }

// Set does nothing: the request's headers are Envoy's, not ours to change.
func (Headers) Set(string, string) {}

// Keys lists the header names.
func (h Headers) Keys() []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	return out
}
