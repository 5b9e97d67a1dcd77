package policy

import (
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// needs says which of the costlier input.request fields a policy revision can read.
// Building headers, query and path segments as OPA values is most of the per-request input
// cost, and the default scope policy reads none of them; a revision that mentions a field (or
// input.request, or input, as a whole, or with a computed key) gets it. The analysis errs
// towards including: it only leaves out what no rule can reference.
type needs = Fields

// Fields lists what of the input a revision reads: the optional input.request fields the
// engine builds only for revisions that read them, and what decides whether a decision may
// be reused.
type Fields struct {
	Headers       bool `json:"headers"`
	Query         bool `json:"query"`
	PathSegments  bool `json:"path_segments"`
	SourceAddress bool `json:"source_address"`
	// Cacheable is true when a decision can depend only on input.token, input.route,
	// input.request.method and data: no other request field is read, input is never used
	// whole, and no non-deterministic builtin (time.now_ns, http.send, rand.*...) is called.
	// Such a decision is a function of (token, route, method) for the revision's lifetime,
	// so the Check path may reuse it per token.
	Cacheable bool `json:"cacheable"`
	// Token lists the input.token fields a revision reads.
	Token TokenFields `json:"token"`
	// Request lists the input.request fields a revision reads.
	Request RequestFields `json:"request"`
	// Shareable is true when a decision depends on nothing but the route, data and named
	// fields of the request and token (no whole input, no computed key into the request or
	// the token, no claims, no header by a computed name, nothing non-deterministic): requests
	// that agree on those fields get the same decision, whichever token they carry, so the
	// Check path may share it (keyed by exactly those values).
	Shareable bool `json:"shareable"`
}

// RequestFields says which input.request fields a revision reads (Fields has the ones the
// engine builds on demand; these are for the shared-decision key).
type RequestFields struct {
	Method   bool `json:"method,omitempty"`
	Path     bool `json:"path,omitempty"` // path, or path_segments (derived from it)
	Host     bool `json:"host,omitempty"`
	Scheme   bool `json:"scheme,omitempty"`
	Protocol bool `json:"protocol,omitempty"`
	// HeaderNames are the headers read by a constant name (input.request.headers["x-a"]);
	// AnyHeader is set when headers are read whole or by a computed name.
	HeaderNames []string `json:"header_names,omitempty"`
	AnyHeader   bool     `json:"any_header,omitempty"`
	// Unknown is set for a field the engine never sends.
	Unknown bool `json:"unknown,omitempty"`
}

func (r *RequestFields) header(name string) {
	if !slices.Contains(r.HeaderNames, name) {
		r.HeaderNames = append(r.HeaderNames, name)
	}
}

// TokenFields says which input.token fields a revision reads. Whole is set when it reads
// input.token as a whole, with a computed key, or any of its claims: then no decision can be
// shared between tokens (the claims are not part of a shared decision's key).
type TokenFields struct {
	Whole    bool `json:"whole,omitempty"`
	Issuer   bool `json:"issuer,omitempty"`
	Iss      bool `json:"iss,omitempty"`
	Sub      bool `json:"sub,omitempty"`
	ClientID bool `json:"client_id,omitempty"`
	Aud      bool `json:"aud,omitempty"`
	Scopes   bool `json:"scopes,omitempty"`
	Exp      bool `json:"exp,omitempty"`
	Iat      bool `json:"iat,omitempty"`
	JTI      bool `json:"jti,omitempty"`
}

var needAll = Fields{Headers: true, Query: true, PathSegments: true, SourceAddress: true, Token: TokenFields{Whole: true}}

// typeOnly are the builtins that read only the type of their argument. The engine always
// builds input, input.request, input.route and input.token as objects, so a type test of one
// of them is a constant and reads none of its values.
var typeOnly = map[string]bool{
	"is_object": true, "is_array": true, "is_set": true, "is_string": true, "is_number": true,
	"is_boolean": true, "is_null": true, "type_name": true,
}

// isTypeTest reports whether call (operator first) is a type test of an engine-built object.
func isTypeTest(call []*ast.Term) bool {
	if len(call) != 2 {
		return false
	}
	op, ok := call[0].Value.(ast.Ref)
	if !ok || !typeOnly[op.String()] {
		return false
	}
	switch arg := call[1].Value.(type) {
	case ast.Var:
		return arg == ast.InputRootDocument.Value.(ast.Var)
	case ast.Ref:
		if len(arg) == 0 || len(arg) > 2 || !arg[0].Equal(ast.InputRootDocument) {
			return false
		}
		if len(arg) == 1 {
			return true
		}
		k, ok := arg[1].Value.(ast.String)
		return ok && (k == "request" || k == "route" || k == "token")
	}
	return false
}

// readsClock are deterministic-flagged builtins that still read the current time (to check
// a token's or a certificate's validity when no time is given): a decision that calls them
// is not reusable either.
var readsClock = map[string]bool{
	"io.jwt.decode_verify":                                   true,
	"crypto.x509.parse_and_verify_certificates":              true,
	"crypto.x509.parse_and_verify_certificates_with_options": true,
}

func analyzeNeeds(b *bundle.Bundle) needs {
	var n needs
	all, nondeterministic := false, false
	var visit func(x any) bool
	visit = func(x any) bool {
		if all {
			return true
		}
		switch x := x.(type) {
		case *ast.Expr:
			if x.IsCall() && len(x.With) == 0 && isTypeTest(x.Terms.([]*ast.Term)) {
				return true
			}
		case ast.Call:
			if isTypeTest(x) {
				return true
			}
		case ast.Var:
			if x == ast.InputRootDocument.Value.(ast.Var) {
				all = true // input used whole (passed to a function, walked, aliased...)
			}
		case ast.Ref:
			if bi, ok := ast.BuiltinMap[x.String()]; ok && (bi.Nondeterministic || readsClock[bi.Name]) {
				nondeterministic = true
			}
			if len(x) > 0 && x[0].Equal(ast.InputRootDocument) {
				n.markRef(x, &all)
			} else {
				ast.NewGenericVisitor(visit).Walk(x[0])
			}
			for _, t := range x[1:] {
				ast.NewGenericVisitor(visit).Walk(t)
			}
			return true // the ref's parts were visited above
		}
		return false
	}
	for _, m := range b.Modules {
		// Test packages are evaluated only by the tester, never by the decision query.
		if strings.HasSuffix(m.Parsed.Package.Path.String(), "_test") {
			continue
		}
		ast.NewGenericVisitor(visit).Walk(m.Parsed)
	}
	if all {
		return needAll
	}
	rq := n.Request
	n.Cacheable = !nondeterministic && !n.Headers && !n.Query && !n.PathSegments && !n.SourceAddress &&
		!rq.Path && !rq.Host && !rq.Scheme && !rq.Protocol && !rq.Unknown
	n.Shareable = !nondeterministic && !n.Token.Whole && !rq.AnyHeader && !rq.Unknown
	slices.Sort(n.Request.HeaderNames)
	return n
}

func (n *needs) markRef(r ast.Ref, all *bool) {
	if len(r) < 2 {
		*all = true
		return
	}
	top, ok := r[1].Value.(ast.String)
	if !ok {
		*all = true // input[x]
		return
	}
	if top == "token" {
		n.Token.mark(r)
		return
	}
	if top != "request" {
		return
	}
	if len(r) < 3 {
		*all = true // input.request as a whole
		return
	}
	field, ok := r[2].Value.(ast.String)
	if !ok {
		*all = true // input.request[x]
		return
	}
	switch field {
	case "headers":
		n.Headers = true
		if len(r) < 4 {
			n.Request.AnyHeader = true
		} else if name, ok := r[3].Value.(ast.String); ok {
			n.Request.header(string(name))
		} else {
			n.Request.AnyHeader = true // headers[x]
		}
	case "query":
		n.Query = true
	case "path_segments":
		n.PathSegments = true
		n.Request.Path = true
	case "source_address":
		n.SourceAddress = true
	case "method":
		n.Request.Method = true
	case "path":
		n.Request.Path = true
	case "host":
		n.Request.Host = true
	case "scheme":
		n.Request.Scheme = true
	case "protocol":
		n.Request.Protocol = true
	default:
		n.Request.Unknown = true
	}
}

// mark records the input.token field r reads.
func (t *TokenFields) mark(r ast.Ref) {
	if len(r) < 3 {
		t.Whole = true
		return
	}
	field, ok := r[2].Value.(ast.String)
	if !ok {
		t.Whole = true // input.token[x]
		return
	}
	switch field {
	case "issuer":
		t.Issuer = true
	case "iss":
		t.Iss = true
	case "sub":
		t.Sub = true
	case "client_id":
		t.ClientID = true
	case "aud":
		t.Aud = true
	case "scopes":
		t.Scopes = true
	case "exp":
		t.Exp = true
	case "iat":
		t.Iat = true
	case "jti":
		t.JTI = true
	default:
		// claims, or a field the engine never sends (undefined whatever the token): the
		// former can't be keyed, and the latter costs nothing to treat alike.
		t.Whole = true
	}
}
