// Package check is scopegate's envoy.service.auth.v3.Authorization service: bearer token →
// verified identity → policy decision → Envoy's answer.
package check

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/extauthz/bearer"
	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/decisionlog"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/token"
)

// Verifier is what the service needs of token verification.
type Verifier interface {
	Verify(ctx context.Context, raw string) (*token.Identity, error)
}

// Options configure the service.
type Options struct {
	Verifier      Verifier
	Policy        *policy.Engine // nil: every verified token is allowed (token-only gate)
	Headers       config.Headers
	MaxTokenBytes int
	Shadow        bool // global shadow mode
	ErrorStatus   int  // status of a deny caused by a policy error (default 500)
	Realm         string
	DecisionLog   *decisionlog.Logger
	Logger        *slog.Logger
	Metrics       *Metrics
}

// Service implements authv3.AuthorizationServer.
type Service struct {
	authv3.UnimplementedAuthorizationServer
	o        Options
	identity []string // identity header names in use, removed from every request they aren't set on
	denials  *denialCache
}

// New builds the service.
func New(o Options) *Service {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ErrorStatus == 0 {
		o.ErrorStatus = 500
	}
	if o.Realm == "" {
		o.Realm = "scopegate"
	}
	s := &Service{o: o, denials: &denialCache{realm: o.Realm}}
	for _, h := range []string{o.Headers.Subject, o.Headers.ClientID, o.Headers.Scopes, o.Headers.Issuer} {
		if h != "" && h != "-" {
			s.identity = append(s.identity, h)
		}
	}
	return s
}

// Verifier returns the token verifier the service uses.
func (s *Service) Verifier() Verifier { return s.o.Verifier }

// perToken is what the service derives once per verified token and memoises on the
// identity: the policy's token document, the plain allow response, and (for a policy
// revision whose decision depends only on token, route and method) its decisions.
type perToken struct {
	term  *ast.Term
	allow *authv3.CheckResponse

	mu        sync.RWMutex
	decisions map[decisionKey]policy.Decision
}

// decisionKey is everything a cacheable decision can depend on besides the token.
type decisionKey struct {
	rev                         *policy.Revision
	route, scopes, mode, method string
}

// maxDecisionsPerToken bounds the per-token decision cache (a token is used on few routes).
const maxDecisionsPerToken = 32

func (pt *perToken) decision(k decisionKey) (policy.Decision, bool) {
	pt.mu.RLock()
	d, ok := pt.decisions[k]
	pt.mu.RUnlock()
	return d, ok
}

func (pt *perToken) remember(k decisionKey, d policy.Decision) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.decisions == nil {
		pt.decisions = make(map[decisionKey]policy.Decision, 4)
	}
	if len(pt.decisions) >= maxDecisionsPerToken {
		for old := range pt.decisions {
			if old.rev != k.rev { // drop decisions of revisions no longer in force first
				delete(pt.decisions, old)
			}
		}
		if len(pt.decisions) >= maxDecisionsPerToken {
			return
		}
	}
	pt.decisions[k] = d
}

// cacheKey returns the decision key when rev's decisions may be reused for this request:
// the policy reads nothing of the request beyond the method, and the route carries no
// extension beyond route, scopes and mode.
func cacheKey(rev *policy.Revision, ext map[string]string, method string) (decisionKey, bool) {
	if !rev.Reads.Cacheable {
		return decisionKey{}, false
	}
	n := 0
	for _, name := range [...]string{"route", "scopes", "mode"} {
		if _, ok := ext[name]; ok {
			n++
		}
	}
	if n != len(ext) {
		return decisionKey{}, false
	}
	return decisionKey{rev: rev, route: ext["route"], scopes: ext["scopes"], mode: ext["mode"], method: method}, true
}

// Check answers one ext_authz request. It never returns an error: every failure is a
// deny response, so Envoy's failure_mode_allow never comes into play for our own faults.
func (s *Service) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	attrs := req.GetAttributes()
	httpReq := attrs.GetRequest().GetHttp()
	rec := decisionlog.Record{Time: start, Route: attrs.GetContextExtensions()["route"], Method: httpReq.GetMethod()}
	fullPath := httpReq.GetPath()
	var rawQuery string
	rec.Path, rawQuery = policy.SplitPathQuery(fullPath)

	resp := s.decide(ctx, req, httpReq, rawQuery, &rec)
	rec.Duration = time.Since(start)
	s.o.Metrics.observe(&rec)
	s.o.DecisionLog.Log(&rec)
	return resp, nil
}

func (s *Service) decide(ctx context.Context, req *authv3.CheckRequest, httpReq *authv3.AttributeContext_HttpRequest, rawQuery string, rec *decisionlog.Record) *authv3.CheckResponse {
	if httpReq == nil {
		return s.deny(rec, 400, "invalid_request", denial{status: 400, code: codes.InvalidArgument, errCode: "invalid_request", description: "not an HTTP request"})
	}
	raw, err := bearer.Extract(bearer.Request{Authorization: authorizationValues(httpReq), RawQuery: rawQuery}, s.o.MaxTokenBytes)
	if err != nil {
		var be *bearer.Error
		errors.As(err, &be)
		if be.Missing {
			return s.deny(rec, 401, be.Reason, denial{status: 401, code: codes.Unauthenticated, description: "a bearer token is required", challenge: true})
		}
		return s.deny(rec, 400, be.Reason, denial{status: 400, code: codes.InvalidArgument, errCode: "invalid_request", description: be.Description, challenge: true})
	}
	id, err := s.o.Verifier.Verify(ctx, raw)
	if err != nil {
		var te *token.Error
		if !errors.As(err, &te) {
			// Not one of ours: fail closed, say nothing about it to the client.
			s.o.Logger.Error("token verification failed unexpectedly", "error", err)
			return s.deny(rec, 503, "internal_error", denial{status: 503, code: codes.Unavailable, errCode: "temporarily_unavailable", description: "try again later", retryAfter: "5"})
		}
		if te.Unavailable {
			return s.deny(rec, 503, te.Reason, denial{status: 503, code: codes.Unavailable, errCode: "temporarily_unavailable", description: te.Description, retryAfter: "5"})
		}
		return s.deny(rec, 401, te.Reason, denial{status: 401, code: codes.Unauthenticated, errCode: "invalid_token", description: te.Description, challenge: true})
	}
	rec.Issuer, rec.Subject, rec.ClientID, rec.KID, rec.JTI, rec.Scopes = id.Issuer, id.Subject, id.ClientID, id.KID, id.JTI, id.ScopeString
	pt := s.memo(id)
	if s.o.Policy == nil {
		rec.Allow, rec.Status = true, 200
		return pt.allow
	}
	return s.authorize(ctx, req, httpReq, rawQuery, rec, id, pt)
}

// evaluate returns the policy's decision for a verified request, reusing this token's
// earlier decision when the revision's decisions are cacheable.
func (s *Service) evaluate(ctx context.Context, req *authv3.CheckRequest, httpReq *authv3.AttributeContext_HttpRequest, rawQuery string, rec *decisionlog.Record, route policy.Route, pt *perToken) (policy.Decision, error) {
	rev := s.o.Policy.Revision()
	rec.Revision = rev.ID
	key, cacheable := cacheKey(rev, req.GetAttributes().GetContextExtensions(), httpReq.GetMethod())
	if cacheable {
		if d, ok := pt.decision(key); ok {
			return d, nil
		}
	}
	in := policy.Input{Request: requestDoc(req.GetAttributes(), httpReq, rec.Path, rawQuery, rev.Reads), Route: route}
	dec, err := s.o.Policy.Eval(ctx, rev, in.Value(pt.term))
	if err == nil && cacheable {
		pt.remember(key, dec)
	}
	return dec, err
}

// authorize turns the policy's decision into Envoy's answer (shadow mode lets denials pass).
func (s *Service) authorize(ctx context.Context, req *authv3.CheckRequest, httpReq *authv3.AttributeContext_HttpRequest, rawQuery string, rec *decisionlog.Record, id *token.Identity, pt *perToken) *authv3.CheckResponse {
	ext := req.GetAttributes().GetContextExtensions()
	route := policy.RouteFrom(ext)
	shadow := s.o.Shadow || route.Mode == "shadow"
	dec, err := s.evaluate(ctx, req, httpReq, rawQuery, rec, route, pt)
	if err != nil {
		var ee *policy.EvalError
		class := "eval_error"
		if errors.As(err, &ee) {
			class = ee.Class
		}
		s.o.Metrics.policyError(class)
		s.o.Logger.Error("policy evaluation failed; denying", "error", err, "class", class, "revision", rec.Revision, "route", route.Name)
		if shadow {
			return s.shadowAllow(rec, pt, s.o.ErrorStatus, "policy_"+class)
		}
		return s.deny(rec, s.o.ErrorStatus, "policy_"+class, denial{status: s.o.ErrorStatus, code: codes.Internal, errCode: "server_error", description: "the authorization policy failed"})
	}
	if !dec.Allow {
		status := dec.Status
		if status == 0 {
			status = 403
		}
		reason := dec.Reason
		if reason == "" {
			reason = "policy_denied"
		}
		rec.MissingScopes = dec.MissingScopes
		if shadow {
			return s.shadowAllow(rec, pt, status, reason)
		}
		d := denial{status: status, code: grpcCode(status), errCode: "access_denied", description: "the request is not allowed", extra: headerOptions(dec.ResponseHeaders)}
		if len(dec.MissingScopes) > 0 {
			// RFC 6750 §3.1: the challenge names the scope the resource needs.
			d.status, d.code, d.errCode, d.challenge = 403, codes.PermissionDenied, "insufficient_scope", true
			d.description = "the token lacks a required scope"
			d.scope = strings.Join(route.Scopes, " ")
		}
		rec.Allow, rec.Status, rec.Reason = false, d.status, reason
		return buildDenial(d, s.o.Realm)
	}
	rec.Allow, rec.Status = true, 200
	if len(dec.Headers) == 0 && len(dec.ResponseHeaders) == 0 {
		return pt.allow
	}
	return s.allow(id, dec.Headers, dec.ResponseHeaders)
}

// shadowAllow lets a would-be denial through, recording what would have happened.
func (s *Service) shadowAllow(rec *decisionlog.Record, pt *perToken, status int, reason string) *authv3.CheckResponse {
	rec.Allow, rec.Shadow, rec.Status, rec.Reason = true, true, status, reason
	s.o.Metrics.shadowDenial(reason)
	return pt.allow
}

func (s *Service) deny(rec *decisionlog.Record, status int, reason string, d denial) *authv3.CheckResponse {
	rec.Allow, rec.Status, rec.Reason = false, status, reason
	return s.denials.get(reason+"\x00"+d.description, d)
}

func (s *Service) memo(id *token.Identity) *perToken {
	if pt, ok := id.Memo().(*perToken); ok {
		return pt
	}
	pt := &perToken{allow: s.allow(id, nil, nil)}
	if s.o.Policy != nil {
		pt.term = policy.TokenTerm(id)
	}
	id.SetMemo(pt)
	return pt
}

// allow builds an OK response carrying the identity headers; identity headers with no value
// are removed from the request, so a client can never supply them itself.
func (s *Service) allow(id *token.Identity, extra, respHeaders []policy.Header) *authv3.CheckResponse {
	h := s.o.Headers
	ok := &authv3.OkHttpResponse{}
	for _, kv := range [][2]string{{h.Subject, id.Subject}, {h.ClientID, id.ClientID}, {h.Scopes, id.ScopeString}, {h.Issuer, id.Issuer}} {
		if kv[0] == "" || kv[0] == "-" {
			continue
		}
		if kv[1] == "" {
			ok.HeadersToRemove = append(ok.HeadersToRemove, kv[0])
			continue
		}
		ok.Headers = append(ok.Headers, header(kv[0], kv[1]))
	}
	for _, x := range extra {
		if s.isIdentityHeader(x.Name) {
			continue // the policy can't overwrite the verified identity
		}
		ok.Headers = append(ok.Headers, header(x.Name, x.Value))
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
		out[i] = header(x.Name, x.Value)
	}
	return out
}

func grpcCode(status int) codes.Code {
	switch {
	case status == 401:
		return codes.Unauthenticated
	case status == 403:
		return codes.PermissionDenied
	case status == 429:
		return codes.ResourceExhausted
	case status >= 500:
		return codes.Unavailable
	case status >= 400:
		return codes.InvalidArgument
	}
	return codes.PermissionDenied
}

// authorizationValues returns the Authorization header's values: from the headers map
// (Envoy joins repeats with ","), or from header_map when Envoy sends raw headers.
func authorizationValues(h *authv3.AttributeContext_HttpRequest) []string {
	if v, ok := h.GetHeaders()["authorization"]; ok {
		return []string{v}
	}
	var out []string
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		if strings.EqualFold(hv.GetKey(), "authorization") {
			v := hv.GetValue()
			if v == "" {
				v = string(hv.GetRawValue())
			}
			out = append(out, v)
		}
	}
	return out
}

// requestDoc builds input.request, with the optional fields the policy revision reads.
// Pseudo-headers are represented by method, path, host and scheme; credentials
// (authorization, cookie) never reach the policy.
func requestDoc(attrs *authv3.AttributeContext, h *authv3.AttributeContext_HttpRequest, path, rawQuery string, reads policy.Fields) policy.Request {
	r := policy.Request{Method: h.GetMethod(), Path: path, Host: h.GetHost(), Scheme: h.GetScheme(), Protocol: h.GetProtocol()}
	if reads.Headers {
		r.Headers = make(map[string]string, len(h.GetHeaders()))
		for k, v := range h.GetHeaders() {
			if k == "authorization" || k == "cookie" || k == "proxy-authorization" || strings.HasPrefix(k, ":") {
				continue
			}
			r.Headers[k] = v
		}
	}
	if reads.PathSegments {
		r.PathSegments = policy.SplitPath(path)
	}
	if reads.Query {
		r.Query = policy.ParseQuery(rawQuery)
	}
	if sa := attrs.GetSource().GetAddress().GetSocketAddress(); sa != nil && reads.SourceAddress {
		r.SourceAddress = net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
	}
	return r
}
