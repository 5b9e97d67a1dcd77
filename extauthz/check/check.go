// Package check is scopegate's envoy.service.auth.v3.Authorization service: bearer token →
// verified identity → policy decision → Envoy's answer.
package check

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/trace"

	"github.com/scopegate/scopegate/extauthz/bearer"
	"github.com/scopegate/scopegate/extauthz/decisionlog"
	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/extauthz/dpop"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/routes"
	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/contract"
)

// Verifier is what the service needs of token verification.
type Verifier interface {
	Verify(ctx context.Context, raw string) (*token.Identity, error)
}

// Headers names the identity headers sent upstream on allow; an empty name turns one off.
type Headers struct {
	Subject  string
	ClientID string
	Scopes   string
	Issuer   string
}

// Options configure the service.
type Options struct {
	Verifier      Verifier
	Policy        *policy.Engine // nil: every verified token is allowed (token-only gate)
	Headers       Headers
	MaxTokenBytes int
	Shadow        bool // global shadow mode
	ErrorStatus   int  // status of a deny caused by a policy error (default 500)
	// DPoP checks proofs of DPoP-bound tokens (RFC 9449); nil refuses the DPoP scheme.
	DPoP *dpop.Verifier
	// ExternalBaseURL replaces the request's scheme and authority in the URI a DPoP proof
	// names (htu), for deployments behind another proxy.
	ExternalBaseURL string
	DecisionLog     *decisionlog.Logger
	Logger          *slog.Logger
	Metrics         *Metrics
	// Routes is authz's own route table (mesh mode): a request whose context extensions name
	// no route is matched against it, as Envoy would route it, and the matched route's
	// extensions are its route contract (context extensions that name a route always win).
	// nil: route contracts come only from context extensions.
	Routes *routes.Live
	// DenyUnmatched denies (403, no_route) a request that names no route in its context
	// extensions and matches none in Routes; otherwise it is decided with an empty route
	// (token only).
	DenyUnmatched bool
	// Tracer, when set, traces each Check (joining the trace context in the request's
	// headers) with child spans for token verification and policy evaluation. Nil: no
	// tracing, and the Check path does not touch OpenTelemetry at all.
	Tracer trace.Tracer
	// Now is the clock step-up requirements (max_age) are checked against; nil: the time the
	// Check started.
	Now func() time.Time
}

// Service implements authv3.AuthorizationServer.
type Service struct {
	authv3.UnimplementedAuthorizationServer
	o        Options
	identity []string // identity header names in use, removed from every request they aren't set on
	// public answers a request that matched a public route of the table: allowed, identity
	// headers removed (as the control plane strips them on public routes).
	public  *authv3.CheckResponse
	denials *denialCache
	shared  atomic.Pointer[sharedDecisions]
}

// New builds the service.
func New(o Options) *Service {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ErrorStatus == 0 {
		o.ErrorStatus = 500
	}
	s := &Service{o: o, denials: &denialCache{}}
	if o.DPoP != nil {
		s.denials.dpopAlgs = o.DPoP.Algorithms()
	}
	for _, h := range []string{o.Headers.Subject, o.Headers.ClientID, o.Headers.Scopes, o.Headers.Issuer} {
		if h != "" && h != "-" {
			s.identity = append(s.identity, h)
		}
	}
	s.public = preEncoded(&authv3.CheckResponse{Status: okStatus, HttpResponse: &authv3.CheckResponse_OkResponse{
		OkResponse: &authv3.OkHttpResponse{HeadersToRemove: s.identity}}})
	return s
}

// Check answers one ext_authz request. It never returns an error: every failure is a
// deny response, so Envoy's failure_mode_allow never comes into play for our own faults.
func (s *Service) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	v := policy.NewView(req)
	rec := decisionlog.Record{Time: start, Route: v.Route.Name, Method: v.HTTP.GetMethod(), Path: v.Path,
		RequestID: v.HTTP.GetId(), View: v}
	var span trace.Span
	if s.o.Tracer != nil {
		ctx, span = s.startCheckSpan(ctx, v.Headers)
	}
	resp := s.decide(ctx, &v, &rec)
	rec.Duration = time.Since(start)
	if span != nil {
		endCheckSpan(span, &rec)
	}
	s.o.Metrics.observe(&rec)
	s.o.DecisionLog.Log(&rec)
	return resp, nil
}

func (s *Service) decide(ctx context.Context, v *policy.View, rec *decisionlog.Record) *authv3.CheckResponse {
	if v.HTTP == nil {
		return s.deny(rec, errNotHTTP)
	}
	if !v.Route.Named && (s.o.Routes != nil || s.o.DenyUnmatched) {
		if resp := s.route(v, rec); resp != nil {
			return resp
		}
	}
	// One view of the headers (policy.View.Headers): a repeated Authorization header
	// arrives joined with ",", which bearer refuses.
	first, present := v.Header("authorization")
	n := 0
	if present {
		n = 1
	}
	raw, scheme, err := bearer.ExtractFirst(first, n, v.RawQuery, s.o.MaxTokenBytes)
	if err != nil {
		d, ok := err.(*denial.Denial)
		if !ok {
			// bearer refuses with nothing else; should that change, fail closed, never panic.
			s.o.Logger.Error("credential extraction failed unexpectedly", "error", err)
			return s.deny(rec, errInternal)
		}
		if d.Kind == denial.Unauthorized {
			// No credentials: a bare challenge, with one description whatever was sent instead.
			return s.deny(rec, challenged(errNoToken, false, v.Route.MetadataURL))
		}
		// The error goes in the challenge of the scheme the client used (RFC 9449 §7.1).
		return s.deny(rec, challenged(d, scheme == bearer.SchemeDPoP && s.o.DPoP != nil, v.Route.MetadataURL))
	}
	if scheme == bearer.SchemeDPoP && s.o.DPoP == nil {
		return s.deny(rec, errNoDPoP)
	}
	dpopScheme := scheme == bearer.SchemeDPoP
	id, err := s.verify(ctx, raw)
	if err != nil {
		var d *denial.Denial
		if !errors.As(err, &d) {
			// Not one of ours: fail closed, say nothing about it to the client.
			s.o.Logger.Error("token verification failed unexpectedly", "error", err)
			return s.deny(rec, errInternal)
		}
		rec.Detail = d.Detail // for the decision log only: the client gets the short description
		if d.Kind == denial.InvalidToken {
			d = challenged(d, dpopScheme, v.Route.MetadataURL)
		}
		return s.deny(rec, d)
	}
	rec.Issuer, rec.Subject, rec.ClientID, rec.KID, rec.JTI, rec.Scopes = id.Issuer, id.Subject, id.ClientID, id.KID, id.JTI, id.ScopeString
	rec.Identity = id
	pt := s.memo(id)
	rec.TokenDoc = pt
	if resp := s.checkBinding(ctx, v, rec, raw, scheme, id, pt); resp != nil {
		return resp
	}
	if v.RouteErr != nil {
		return s.invalidRoute(v, rec)
	}
	req := requirementOf(&v.Route)
	if s.o.Policy == nil {
		if resp := s.checkRoute(v, rec, id, pt, &req, dpopScheme); resp != nil {
			return resp
		}
		rec.Allow, rec.Status = true, 200
		return pt.allowResponse(s, id)
	}
	return s.authorize(ctx, v, rec, id, pt, &req, dpopScheme)
}

// evaluate returns the policy's decision for a verified request. A cacheable revision's
// decision is reused from this token's earlier requests, then (shareable revisions) from any
// token that agrees on what the revision reads; only a miss on both is evaluated. The
// decision returned is shared: read it, never change it.
func (s *Service) evaluate(ctx context.Context, v *policy.View, rec *decisionlog.Record, id *token.Identity, pt *perToken, rev *policy.Revision) (*policy.Decision, error) {
	rec.Revision = rev.ID
	key, cacheable := cacheKey(rev, &v.Route, v.HTTP.GetMethod())
	if cacheable {
		if d, ok := pt.decision(key); ok {
			s.o.Metrics.decision(fromToken)
			return d, nil
		}
	}
	var (
		shared *sharedDecisions
		skey   []byte
		buf    [256]byte // the key stays on the stack unless it is long
	)
	if rev.Reads.Shareable {
		shared = s.sharedFor(rev)
		skey = policy.AppendSharedKey(buf[:0], &rev.Reads, v, id)
		if d, ok := shared.get(skey); ok {
			if cacheable {
				pt.remember(key, d)
			}
			s.o.Metrics.decision(fromShared)
			return d, nil
		}
	}
	dec, err := s.o.Policy.Eval(ctx, rev, policy.BuildInput(v, &rev.Reads, pt.tokenTerm(id)))
	if err != nil {
		return nil, err
	}
	s.o.Metrics.decision(evaluated)
	if cacheable {
		pt.remember(key, &dec)
	}
	if shared != nil {
		shared.put(skey, &dec)
	}
	return &dec, nil
}

// authorize turns the policy's decision into Envoy's answer (shadow mode lets denials pass);
// a request the policy allows must then meet the route's step-up requirement.
func (s *Service) authorize(ctx context.Context, v *policy.View, rec *decisionlog.Record, id *token.Identity, pt *perToken, req *requirement, dpopScheme bool) *authv3.CheckResponse {
	// input.route is built only when the policy runs: a reused decision needs only the mode.
	shadow := s.o.Shadow || v.Route.Shadow
	rev := s.o.Policy.Revision()
	if rev == nil {
		// A bundle-server policy that has not arrived yet: fail closed, like keys never fetched.
		return s.deny(rec, errNoPolicy)
	}
	var dec *policy.Decision
	var err error
	if s.o.Tracer != nil {
		dec, err = s.tracedEvaluate(ctx, v, rec, id, pt, rev)
	} else {
		dec, err = s.evaluate(ctx, v, rec, id, pt, rev)
	}
	if err != nil {
		class := policy.ErrorClass(err)
		s.o.Metrics.policyError(class)
		s.o.Logger.Error("policy evaluation failed; denying", "error", err, "class", class, "revision", rec.Revision, "route", v.Route.Name)
		if shadow {
			return s.shadowAllow(rec, id, pt, s.o.ErrorStatus, contract.ReasonPolicyErrorPrefix+class)
		}
		d := denial.New(denial.ServerError, contract.ReasonPolicyErrorPrefix+class, "the authorization policy failed")
		d.Status = s.o.ErrorStatus
		return s.deny(rec, d)
	}
	if !dec.Allow {
		status := dec.Status
		if status == 0 {
			status = 403
		}
		reason := dec.Reason
		if reason == "" {
			reason = contract.ReasonPolicyDenied
		}
		rec.MissingScopes = dec.MissingScopes
		if shadow {
			return s.shadowAllow(rec, id, pt, status, reason)
		}
		if dec.StepUp() {
			return s.policyStepUp(v, rec, id, dec, dpopScheme)
		}
		// The policy's own reasons, statuses and headers vary: built each time, not cached.
		d := &denial.Denial{Kind: denial.AccessDenied, Reason: reason, Status: status, Description: "the request is not allowed",
			Headers: denialHeaders(dec.ResponseHeaders)}
		if len(dec.MissingScopes) > 0 {
			// RFC 6750 §3.1: the challenge names the scope the resource needs.
			d.Kind, d.Status, d.Description = denial.InsufficientScope, 0, "the token lacks a required scope"
			d.Scope = strings.Join(v.Route.ScopeList(), " ")
			d.ResourceMetadata = v.Route.MetadataURL
		}
		return s.denyNow(rec, d)
	}
	if resp := s.checkRoute(v, rec, id, pt, req, dpopScheme); resp != nil {
		return resp
	}
	rec.Allow, rec.Status = true, 200
	if len(dec.Headers) == 0 && len(dec.ResponseHeaders) == 0 {
		return pt.allowResponse(s, id)
	}
	return s.allow(id, dec.Headers, dec.ResponseHeaders)
}

// shadowAllow lets a would-be denial through, recording what would have happened.
func (s *Service) shadowAllow(rec *decisionlog.Record, id *token.Identity, pt *perToken, status int, reason string) *authv3.CheckResponse {
	rec.Allow, rec.Shadow, rec.Status, rec.Reason = true, true, status, reason
	s.o.Metrics.shadowDenial(reason)
	return pt.allowResponse(s, id)
}

// Refusals of the Check itself that depend on nothing of the request.
var (
	errNotHTTP  = denial.New(denial.NotHTTP, contract.ReasonInvalidRequest, "not an HTTP request")
	errNoToken  = denial.New(denial.Unauthorized, contract.ReasonMissingToken, "a bearer token is required")
	errNoDPoP   = denial.New(denial.Unauthorized, contract.ReasonMissingToken, "the DPoP scheme is not accepted here")
	errInternal = denial.New(denial.Unavailable, contract.ReasonInternalError, "try again later")
	errNoPolicy = denial.New(denial.Unavailable, contract.ReasonNoPolicy, "the authorization policy is not loaded yet")
)

// challenged is d (perhaps a shared sentinel, so copied) with what its challenge says of
// this request: whether the client used the DPoP scheme, and the route's metadata URL.
func challenged(d *denial.Denial, dpopScheme bool, resourceMetadata string) *denial.Denial {
	c := *d
	c.DPoP, c.ResourceMetadata = dpopScheme, resourceMetadata
	return &c
}

// deny answers with d, built once per distinct refusal: d must depend only on fixed strings
// and the route's own values (metadata URL, step-up requirements), which keep the set of
// answers bounded by our reasons and the config.
func (s *Service) deny(rec *decisionlog.Record, d *denial.Denial) *authv3.CheckResponse {
	rec.Allow, rec.Status, rec.Reason = false, d.HTTPStatus(), d.Reason
	key := d.Reason + "\x00" + d.Description + "\x00" + d.ResourceMetadata
	if d.ACRValues != "" || d.MaxAge != "" {
		key += "\x00" + d.ACRValues + "\x00" + d.MaxAge
	}
	if d.DPoP {
		key += "\x00dpop"
	}
	return s.denials.get(key, d)
}

// denyNow answers with d built for this Check alone (a fresh nonce, a policy's own values).
func (s *Service) denyNow(rec *decisionlog.Record, d *denial.Denial) *authv3.CheckResponse {
	rec.Allow, rec.Status, rec.Reason = false, d.HTTPStatus(), d.Reason
	return d.Response(s.denials.dpopAlgs)
}

func (s *Service) memo(id *token.Identity) *perToken {
	if pt, ok := id.Memo().(*perToken); ok {
		return pt
	}
	pt := &perToken{}
	id.SetMemo(pt)
	return pt
}

// allow builds an OK response carrying the identity headers; identity headers with no value
// are removed from the request, so a client can never supply them itself.
func (s *Service) allow(id *token.Identity, extra, respHeaders []policy.Header) *authv3.CheckResponse {
	h := s.o.Headers
	// One allocation for the identity headers' messages, not two per header: this response is
	// built for every new token.
	type pair struct {
		opt corev3.HeaderValueOption
		hv  corev3.HeaderValue
	}
	var slab []pair
	ok := &authv3.OkHttpResponse{Headers: make([]*corev3.HeaderValueOption, 0, len(s.identity)+len(extra))}
	for _, kv := range [][2]string{{h.Subject, id.Subject}, {h.ClientID, id.ClientID}, {h.Scopes, id.ScopeString}, {h.Issuer, id.Issuer}} {
		if kv[0] == "" || kv[0] == "-" {
			continue
		}
		if kv[1] == "" {
			ok.HeadersToRemove = append(ok.HeadersToRemove, kv[0])
			continue
		}
		if slab == nil {
			slab = make([]pair, 0, len(s.identity))
		}
		slab = append(slab, pair{})
		p := &slab[len(slab)-1]
		p.hv.Key, p.hv.Value = kv[0], kv[1]
		p.opt.Header, p.opt.AppendAction = &p.hv, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		ok.Headers = append(ok.Headers, &p.opt)
	}
	for _, x := range extra {
		if s.isIdentityHeader(x.Name) {
			continue // the policy can't overwrite the verified identity
		}
		ok.Headers = append(ok.Headers, denial.HeaderOption(x.Name, x.Value))
	}
	ok.ResponseHeadersToAdd = headerOptions(respHeaders)
	return &authv3.CheckResponse{Status: okStatus, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok}}
}

func (s *Service) isIdentityHeader(name string) bool {
	for _, h := range s.identity {
		if h == name {
			return true
		}
	}
	return false
}

func headerOptions(hs []policy.Header) []*corev3.HeaderValueOption {
	if len(hs) == 0 {
		return nil
	}
	out := make([]*corev3.HeaderValueOption, len(hs))
	for i, x := range hs {
		out[i] = denial.HeaderOption(x.Name, x.Value)
	}
	return out
}

// denialHeaders are a policy's response headers on its denial.
func denialHeaders(hs []policy.Header) []denial.Header {
	if len(hs) == 0 {
		return nil
	}
	out := make([]denial.Header, len(hs))
	for i, x := range hs {
		out[i] = denial.Header{Name: x.Name, Value: x.Value}
	}
	return out
}
