package policy

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// needs says which input fields a policy revision can read. Building headers, query and
// path segments as OPA values is most of the per-request input cost, and the default scope
// policy reads none of them; a revision that mentions a field (or input.request, or input,
// as a whole, or with a computed key) gets it. The analysis errs towards including: it only
// leaves out what no rule can reference. Field names come from the tables in fields.go.
type needs = Fields

// FieldSet is a set of fields of one input document, a bit per row of its table.
type FieldSet uint32

func (s FieldSet) has(i int) bool { return s&(1<<i) != 0 }

// names lists the set's fields by name, in table order.
func (s FieldSet) names(name func(i int) string, n int) []string {
	out := []string{}
	for i := 0; i < n; i++ {
		if s.has(i) {
			out = append(out, name(i))
		}
	}
	return out
}

// Fields lists what of the input a revision reads, and what follows for reusing decisions.
type Fields struct {
	// Request and Token are the input.request and input.token fields read (a bit per row of
	// requestFields and tokenFields).
	Request, Token FieldSet
	// HeaderNames are the headers read by a constant name (input.request.headers["x-a"]);
	// AnyHeader is set when headers are read whole or by a computed name.
	HeaderNames []string
	AnyHeader   bool
	// Unknown is set when the revision reads an input.request field the engine never sends.
	Unknown bool
	// Cacheable is true when a decision can depend only on input.token, input.route,
	// input.request.method and data: no other request field is read, input is never used
	// whole, and no non-deterministic builtin (time.now_ns, http.send, rand.*...) is called.
	// Such a decision is a function of (token, route, method) for the revision's lifetime,
	// so the Check path may reuse it per token.
	Cacheable bool
	// Shareable is true when a decision depends on nothing but the route, data and fields of
	// the request and token that a shared key holds (no whole input, no computed key into the
	// request or the token, no claims, no header by a computed name, nothing
	// non-deterministic): requests that agree on those fields get the same decision, whichever
	// token they carry, so the Check path may share it (keyed by AppendSharedKey).
	Shareable bool
}

// MarshalJSON names the fields read (for /readyz and `scopegate check`).
func (f Fields) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Request     []string `json:"request"`
		HeaderNames []string `json:"header_names,omitempty"`
		AnyHeader   bool     `json:"any_header,omitempty"`
		Unknown     bool     `json:"unknown_request_field,omitempty"`
		Token       []string `json:"token"`
		Cacheable   bool     `json:"cacheable"`
		Shareable   bool     `json:"shareable"`
	}{
		Request:     f.Request.names(requestFieldName, len(requestFields)),
		HeaderNames: f.HeaderNames, AnyHeader: f.AnyHeader, Unknown: f.Unknown,
		Token:     f.Token.names(func(i int) string { return tokenFields[i].name }, len(tokenFields)),
		Cacheable: f.Cacheable, Shareable: f.Shareable,
	})
}

// requestFieldName names a requestFields row as /readyz lists it: "method" for
// input.request.method, "source.principal" for a peer's field.
func requestFieldName(i int) string {
	if f := &requestFields[i]; f.doc != "" {
		return f.path()
	}
	return requestFields[i].name
}

// Reads reports whether the revision reads the named field, "request.<name>",
// "source.<name>", "destination.<name>" or "token.<name>".
func (f *Fields) Reads(field string) bool {
	doc, name, _ := strings.Cut(field, ".")
	if doc == "token" {
		i := slices.IndexFunc(tokenFields[:], func(t tokenField) bool { return t.name == name })
		return i >= 0 && f.Token.has(i)
	}
	i := slices.IndexFunc(requestFields[:], func(r requestField) bool { return r.path() == field })
	return i >= 0 && f.Request.has(i)
}

const (
	allRequest = FieldSet(1)<<len(requestFields) - 1
	allToken   = FieldSet(1)<<len(tokenFields) - 1
)

var needAll = Fields{Request: allRequest, Token: allToken, AnyHeader: true}

// AllFields reads every field: the input of a revision that reads input whole.
func AllFields() *Fields {
	f := needAll
	return &f
}

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
		return ok && (k == "request" || k == "route" || k == "token" || slices.Contains(peerDocs[:], string(k)))
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
	n.Cacheable, n.Shareable = !nondeterministic && !n.Unknown, !nondeterministic && !n.Unknown && !n.AnyHeader
	for i := range requestFields {
		if n.Request.has(i) {
			n.Cacheable = n.Cacheable && requestFields[i].perToken
			n.Shareable = n.Shareable && (requestFields[i].key != nil || requestFields[i].byName)
		}
	}
	for i := range tokenFields {
		if n.Token.has(i) {
			n.Shareable = n.Shareable && tokenFields[i].key != nil
		}
	}
	slices.Sort(n.HeaderNames)
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
	switch top {
	case "token":
		n.markToken(r)
	case "request":
		n.markRequest(r, all)
	default:
		if slices.Contains(peerDocs[:], string(top)) {
			n.markPeer(string(top), r)
		}
	}
}

// markPeer records the input.source or input.destination field r reads; the document as a
// whole or a computed key reads all of its fields, a name the engine never sends is Unknown.
func (n *needs) markPeer(doc string, r ast.Ref) {
	if len(r) >= 3 {
		if name, ok := r[2].Value.(ast.String); ok {
			i := slices.IndexFunc(requestFields[:], func(f requestField) bool { return f.doc == doc && f.name == string(name) })
			if i < 0 {
				n.Unknown = true
				return
			}
			n.Request |= 1 << i
			return
		}
	}
	for i := range requestFields {
		if requestFields[i].doc == doc {
			n.Request |= 1 << i
		}
	}
}

func (n *needs) markRequest(r ast.Ref, all *bool) {
	if len(r) < 3 {
		*all = true // input.request as a whole
		return
	}
	name, ok := r[2].Value.(ast.String)
	if !ok {
		*all = true // input.request[x]
		return
	}
	i := slices.IndexFunc(requestFields[:], func(f requestField) bool { return f.doc == "" && f.name == string(name) })
	if i < 0 {
		n.Unknown = true
		return
	}
	n.Request |= 1 << i
	if !requestFields[i].byName {
		return
	}
	if len(r) < 4 {
		n.AnyHeader = true
	} else if key, ok := r[3].Value.(ast.String); ok {
		if !slices.Contains(n.HeaderNames, string(key)) {
			n.HeaderNames = append(n.HeaderNames, string(key))
		}
	} else {
		n.AnyHeader = true // headers[x]
	}
}

// markToken records the input.token field r reads; the token as a whole, a computed key or
// a field the engine never sends reads every field (claims included: nothing to key on).
func (n *needs) markToken(r ast.Ref) {
	if len(r) >= 3 {
		if name, ok := r[2].Value.(ast.String); ok {
			if i := slices.IndexFunc(tokenFields[:], func(f tokenField) bool { return f.name == string(name) }); i >= 0 {
				n.Token |= 1 << i
				return
			}
		}
	}
	n.Token = allToken
}
