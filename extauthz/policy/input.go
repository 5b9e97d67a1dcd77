// Package policy evaluates the Rego scope policy: it builds the input document from a
// verified request, runs the prepared query of the policy revision in force, and reads the
// decision into a typed struct. Revisions are compiled (and their tests run) before they are
// swapped in atomically.
package policy

import (
	"net/url"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/contract"
)

// Input is the document a policy sees as `input` (see policies/README.md).
type Input struct {
	Request Request `json:"request"`
	Route   Route   `json:"route"`
	Token   Token   `json:"token"`
}

// Request is input.request.
type Request struct {
	Method        string              `json:"method"`
	Path          string              `json:"path"`
	PathSegments  []string            `json:"path_segments"`
	Query         map[string][]string `json:"query"`
	Host          string              `json:"host"`
	Scheme        string              `json:"scheme"`
	Headers       map[string]string   `json:"headers"`
	SourceAddress string              `json:"source_address"`
	Protocol      string              `json:"protocol"`
}

// Route is input.route, from the ext_authz context extensions of the route Envoy matched.
type Route struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
	Mode   string   `json:"mode"`
	// Extra holds every other context extension; each appears as input.route.<key>.
	Extra map[string]string `json:"-"`
}

// Token is input.token.
type Token struct {
	Issuer   string         `json:"issuer"`
	Iss      string         `json:"iss"`
	Sub      string         `json:"sub"`
	ClientID string         `json:"client_id"`
	Aud      []string       `json:"aud"`
	Scopes   []string       `json:"scopes"`
	Exp      int64          `json:"exp"`
	Iat      int64          `json:"iat"`
	JTI      string         `json:"jti"`
	Claims   map[string]any `json:"claims"`
}

// TokenFrom is the token document of a verified identity.
func TokenFrom(id *token.Identity) Token {
	t := TokenWithoutClaims(id)
	t.Claims = id.Claims()
	return t
}

// TokenWithoutClaims is the token document without its claims, which are decoded only when asked
// for: what the Check path keys shared decisions on.
func TokenWithoutClaims(id *token.Identity) Token {
	t := Token{Issuer: id.Issuer, Iss: id.Iss, Sub: id.Subject, ClientID: id.ClientID, Aud: id.Audience,
		Scopes: id.Scopes, Exp: id.ExpiresAt.Unix(), JTI: id.JTI}
	if !id.IssuedAt.IsZero() {
		t.Iat = id.IssuedAt.Unix()
	}
	if t.Aud == nil {
		t.Aud = []string{}
	}
	return t
}

// RouteFrom reads input.route from context extensions: "route", "scopes" (space-separated)
// and "mode" are named fields; any other key passes through as a string.
func RouteFrom(ext map[string]string) Route {
	r := Route{Name: ext[contract.ExtRoute], Scopes: strings.Fields(ext[contract.ExtScopes]), Mode: ext[contract.ExtMode]}
	if r.Scopes == nil {
		r.Scopes = []string{}
	}
	for k, v := range ext {
		switch k {
		case contract.ExtRoute, contract.ExtScopes, contract.ExtMode:
		default:
			if r.Extra == nil {
				r.Extra = make(map[string]string, len(ext))
			}
			r.Extra[k] = v
		}
	}
	return r
}

// SplitPath splits a path (query already removed) into percent-decoded segments with string
// functions only: "/a/b" → [a b], "//admin" → ["" admin], "/" → [""]. A segment that is not
// valid percent-encoding stays as it was. Decoding happens after splitting, so an encoded
// slash ("%2F") stays inside its segment and can't forge a path boundary.
func SplitPath(p string) []string {
	p = strings.TrimPrefix(p, "/")
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if strings.IndexByte(s, '%') >= 0 {
			if d, err := url.PathUnescape(s); err == nil {
				segs[i] = d
			}
		}
	}
	return segs
}

// SplitPathQuery separates Envoy's :path into path and raw query.
func SplitPathQuery(full string) (path, rawQuery string) {
	if i := strings.IndexByte(full, '?'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return full, ""
}

// ParseQuery decodes a raw query into a map of lists; malformed pairs are kept raw rather
// than dropped, so nothing the client sent is invisible to the policy.
func ParseQuery(raw string) map[string][]string {
	q := map[string][]string{}
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.QueryUnescape(v); err == nil {
			v = dv
		}
		q[k] = append(q[k], v)
	}
	return q
}

// Value converts the input to an OPA value; the token part is built once per identity
// by TokenTerm and reused.
func (in *Input) Value(tok *ast.Term) ast.Value {
	if tok == nil {
		tok = tokenTerm(in.Token)
	}
	return ast.NewObject(
		ast.Item(ast.InternedTerm("request"), requestTerm(&in.Request)),
		ast.Item(ast.InternedTerm("route"), routeTerm(&in.Route)),
		ast.Item(ast.InternedTerm("token"), tok),
	)
}

// TokenTerm returns the token document for id as an OPA term. The caller memoises it per
// token (see check), so the claims are converted once per token, not once per request.
func TokenTerm(id *token.Identity) *ast.Term { return tokenTerm(TokenFrom(id)) }

func tokenTerm(t Token) *ast.Term {
	claims, err := ast.InterfaceToValue(t.Claims)
	if err != nil || t.Claims == nil {
		claims = ast.NewObject()
	}
	return ast.ObjectTerm(
		ast.Item(ast.InternedTerm("issuer"), ast.StringTerm(t.Issuer)),
		ast.Item(ast.InternedTerm("iss"), ast.StringTerm(t.Iss)),
		ast.Item(ast.InternedTerm("sub"), ast.StringTerm(t.Sub)),
		ast.Item(ast.InternedTerm("client_id"), ast.StringTerm(t.ClientID)),
		ast.Item(ast.InternedTerm("aud"), stringsTerm(t.Aud)),
		ast.Item(ast.InternedTerm("scopes"), stringsTerm(t.Scopes)),
		ast.Item(ast.InternedTerm("exp"), ast.IntNumberTerm(int(t.Exp))),
		ast.Item(ast.InternedTerm("iat"), ast.IntNumberTerm(int(t.Iat))),
		ast.Item(ast.InternedTerm("jti"), ast.StringTerm(t.JTI)),
		ast.Item(ast.InternedTerm("claims"), ast.NewTerm(claims)),
	)
}

// requestTerm converts input.request; nil maps and slices (fields the revision does not
// read, so the caller did not build them) are left out.
func requestTerm(r *Request) *ast.Term {
	items := make([][2]*ast.Term, 0, 9)
	items = append(items,
		ast.Item(ast.InternedTerm("method"), ast.StringTerm(r.Method)),
		ast.Item(ast.InternedTerm("path"), ast.StringTerm(r.Path)),
		ast.Item(ast.InternedTerm("host"), ast.StringTerm(r.Host)),
		ast.Item(ast.InternedTerm("scheme"), ast.StringTerm(r.Scheme)),
		ast.Item(ast.InternedTerm("protocol"), ast.StringTerm(r.Protocol)),
	)
	if r.PathSegments != nil {
		items = append(items, ast.Item(ast.InternedTerm("path_segments"), stringsTerm(r.PathSegments)))
	}
	if r.Query != nil {
		query := make([][2]*ast.Term, 0, len(r.Query))
		for k, vs := range r.Query {
			query = append(query, [2]*ast.Term{ast.StringTerm(k), stringsTerm(vs)})
		}
		items = append(items, ast.Item(ast.InternedTerm("query"), ast.ObjectTerm(query...)))
	}
	if r.Headers != nil {
		headers := make([][2]*ast.Term, 0, len(r.Headers))
		for k, v := range r.Headers {
			headers = append(headers, [2]*ast.Term{ast.StringTerm(k), ast.StringTerm(v)})
		}
		items = append(items, ast.Item(ast.InternedTerm("headers"), ast.ObjectTerm(headers...)))
	}
	if r.SourceAddress != "" {
		items = append(items, ast.Item(ast.InternedTerm("source_address"), ast.StringTerm(r.SourceAddress)))
	}
	return ast.ObjectTerm(items...)
}

func routeTerm(r *Route) *ast.Term {
	items := make([][2]*ast.Term, 0, 3+len(r.Extra))
	for k, v := range r.Extra {
		items = append(items, ast.Item(ast.StringTerm(k), ast.StringTerm(v)))
	}
	items = append(items,
		ast.Item(ast.InternedTerm("name"), ast.StringTerm(r.Name)),
		ast.Item(ast.InternedTerm("scopes"), stringsTerm(r.Scopes)),
		ast.Item(ast.InternedTerm("mode"), ast.StringTerm(r.Mode)),
	)
	return ast.ObjectTerm(items...)
}

func stringsTerm(ss []string) *ast.Term {
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(terms...)
}
