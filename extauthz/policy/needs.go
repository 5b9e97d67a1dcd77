package policy

import (
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

// Fields lists the optional input.request fields a revision reads.
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
}

var needAll = Fields{Headers: true, Query: true, PathSegments: true, SourceAddress: true}

func analyzeNeeds(b *bundle.Bundle) needs {
	var n needs
	all, otherRequest, nondeterministic := false, false, false
	var visit func(x any) bool
	visit = func(x any) bool {
		if all {
			return true
		}
		switch x := x.(type) {
		case ast.Var:
			if x == ast.InputRootDocument.Value.(ast.Var) {
				all = true // input used whole (passed to a function, walked, aliased...)
			}
		case ast.Ref:
			if bi, ok := ast.BuiltinMap[x.String()]; ok && bi.Nondeterministic {
				nondeterministic = true
			}
			if len(x) > 0 && x[0].Equal(ast.InputRootDocument) {
				n.markRef(x, &all, &otherRequest)
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
	n.Cacheable = !otherRequest && !nondeterministic && !n.Headers && !n.Query && !n.PathSegments && !n.SourceAddress
	return n
}

func (n *needs) markRef(r ast.Ref, all, otherRequest *bool) {
	if len(r) < 2 {
		*all = true
		return
	}
	top, ok := r[1].Value.(ast.String)
	if !ok {
		*all = true // input[x]
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
	case "query":
		n.Query = true
	case "path_segments":
		n.PathSegments = true
	case "source_address":
		n.SourceAddress = true
	case "method":
	default:
		*otherRequest = true
	}
}
