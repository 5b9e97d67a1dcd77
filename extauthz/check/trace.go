package check

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/scopegate/scopegate/extauthz/decisionlog"
	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/tracing"
)

// Span attributes. Values are the route's name, the issuer's configured name, the decision
// and its fixed reason: never a token, a header value or a claim.
const (
	attrRoute    = attribute.Key("scopegate.route")
	attrIssuer   = attribute.Key("scopegate.issuer")
	attrDecision = attribute.Key("scopegate.decision")
	attrReason   = attribute.Key("scopegate.reason")
	attrStatus   = attribute.Key("http.response.status_code")
	attrRevision = attribute.Key("scopegate.policy_revision")
)

// startCheckSpan starts the Check's span as a child of the trace context Envoy forwarded.
// When Envoy's trace is not sampled there is no span at all (the sampler follows the
// parent, so it would not be recorded): such a Check pays only for reading the headers.
func (s *Service) startCheckSpan(ctx context.Context, headers map[string]string) (context.Context, trace.Span) {
	if tracing.NotSampled(headers) {
		return ctx, nil // the common case, decided without extracting anything
	}
	tctx := tracing.Propagator.Extract(ctx, tracing.Headers(headers))
	if sc := trace.SpanContextFromContext(tctx); sc.IsValid() && !sc.IsSampled() {
		return ctx, nil
	}
	return s.o.Tracer.Start(tctx, "scopegate.Check", trace.WithSpanKind(trace.SpanKindServer))
}

// child starts a child span only under a recording one (nil otherwise).
func (s *Service) child(ctx context.Context, name string) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return s.o.Tracer.Start(ctx, name)
}

func endCheckSpan(span trace.Span, rec *decisionlog.Record) {
	if span.IsRecording() {
		decision := "deny"
		switch {
		case rec.Allow && rec.Shadow:
			decision = "shadow_allow"
		case rec.Allow:
			decision = "allow"
		}
		span.SetAttributes(attrRoute.String(rec.Route), attrIssuer.String(rec.Issuer), attrDecision.String(decision),
			attrReason.String(rec.Reason), attrStatus.Int(rec.Status), attrRevision.String(rec.Revision))
		if !rec.Allow && rec.Status >= 500 {
			span.SetStatus(otelcodes.Error, rec.Reason)
		}
	}
	span.End()
}

// verify verifies the token, in a child span when tracing.
func (s *Service) verify(ctx context.Context, raw string) (*token.Identity, error) {
	if s.o.Tracer == nil {
		return s.o.Verifier.Verify(ctx, raw)
	}
	ctx, span := s.child(ctx, "scopegate.verify_token")
	if span == nil {
		return s.o.Verifier.Verify(ctx, raw)
	}
	defer span.End()
	id, err := s.o.Verifier.Verify(ctx, raw)
	{
		var te *denial.Denial
		if errors.As(err, &te) {
			span.SetAttributes(attrReason.String(te.Reason))
		} else if id != nil {
			span.SetAttributes(attrIssuer.String(id.Issuer))
		}
	}
	return id, err
}

// tracedEvaluate is evaluate in a child span.
func (s *Service) tracedEvaluate(ctx context.Context, v *policy.View, rec *decisionlog.Record, id *token.Identity, pt *perToken, rev *policy.Revision) (*policy.Decision, error) {
	ctx, span := s.child(ctx, "scopegate.policy")
	if span == nil {
		return s.evaluate(ctx, v, rec, id, pt, rev)
	}
	defer span.End()
	d, err := s.evaluate(ctx, v, rec, id, pt, rev)
	{
		span.SetAttributes(attrRevision.String(rev.ID))
		if err != nil {
			span.SetStatus(otelcodes.Error, "policy error")
		}
	}
	return d, err
}
