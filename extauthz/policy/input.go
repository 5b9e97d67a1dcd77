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

// Route is input.route, from the ext_authz context extensions of the route Envoy matched.
type Route struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
	Mode   string   `json:"mode"`
	// ACRValues and MaxAge are the route's step-up requirements (RFC 9470), present only on a
	// route that has them: acr_values a list, max_age a number of seconds.
	ACRValues []string `json:"acr_values,omitempty"`
	MaxAge    *int64   `json:"max_age,omitempty"`
	// Extra holds every other context extension; each appears as input.route.<key>.
	Extra map[string]string `json:"-"`
}

// Token is input.token.
type Token struct {
	Issuer   string   `json:"issuer"`
	Iss      string   `json:"iss"`
	Sub      string   `json:"sub"`
	ClientID string   `json:"client_id"`
	Aud      []string `json:"aud"`
	Scopes   []string `json:"scopes"`
	Exp      int64    `json:"exp"`
	Iat      int64    `json:"iat"`
	JTI      string   `json:"jti"`
	Binding  string   `json:"binding"`
	Source   string   `json:"source"` // "jwt" or "introspection"
	// ACR, AMR and AuthTime are the user's authentication: "", [] and 0 when the token does
	// not say.
	ACR      string         `json:"acr"`
	AMR      []string       `json:"amr"`
	AuthTime int64          `json:"auth_time"`
	Claims   map[string]any `json:"claims"`
}

// tokenFrom is the token document of a verified identity.
func tokenFrom(id *token.Identity) Token {
	t := tokenWithoutClaims(id)
	t.Claims = id.Claims()
	return t
}

// tokenWithoutClaims is the token document without its claims, which are decoded only when asked
// for: what the Check path keys shared decisions on.
func tokenWithoutClaims(id *token.Identity) Token {
	t := Token{Issuer: id.Issuer, Iss: id.Iss, Sub: id.Subject, ClientID: id.ClientID, Aud: id.Audience,
		Scopes: id.Scopes, Exp: id.ExpiresAt.Unix(), JTI: id.JTI, Binding: id.Binding(), Source: id.Source, ACR: id.ACR, AMR: id.AMR}
	if !id.IssuedAt.IsZero() {
		t.Iat = id.IssuedAt.Unix()
	}
	if !id.AuthTime.IsZero() {
		t.AuthTime = id.AuthTime.Unix()
	}
	if t.Aud == nil {
		t.Aud = []string{}
	}
	if t.AMR == nil {
		t.AMR = []string{}
	}
	return t
}

// RouteOf is input.route of a route contract: "route", "scopes" (a list) and "mode" are
// named fields, and so are "acr_values" (a list) and "max_age" (a number of seconds) when the
// route has them; any other extension passes through as a string (a max_age that is no
// number too: the Check refuses such a route before the policy runs).
func RouteOf(c *contract.RouteExt) Route {
	r := Route{Name: c.Name, Scopes: c.ScopeList(), Mode: c.Mode}
	if r.Scopes == nil {
		r.Scopes = []string{}
	}
	if v, ok := c.Raw[contract.ExtACRValues]; ok {
		r.ACRValues = strings.Fields(v)
		if r.ACRValues == nil {
			r.ACRValues = []string{}
		}
	}
	if c.MaxAge != "" {
		n := c.MaxAgeSeconds
		r.MaxAge = &n
	}
	for k, v := range c.Raw {
		switch k {
		case contract.ExtRoute, contract.ExtScopes, contract.ExtMode, contract.ExtACRValues:
		case contract.ExtMaxAge:
			if r.MaxAge == nil {
				if r.Extra == nil {
					r.Extra = make(map[string]string, len(c.Raw))
				}
				r.Extra[k] = v
			}
		default:
			if r.Extra == nil {
				r.Extra = make(map[string]string, len(c.Raw))
			}
			r.Extra[k] = v
		}
	}
	return r
}

// splitPath splits a path (query already removed) into percent-decoded segments with string
// functions only: "/a/b" → [a b], "//admin" → ["" admin], "/" → [""]. A segment that is not
// valid percent-encoding stays as it was. Decoding happens after splitting, so an encoded
// slash ("%2F") stays inside its segment and can't forge a path boundary.
func splitPath(p string) []string {
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

// splitPathQuery separates Envoy's :path into path and raw query.
func splitPathQuery(full string) (path, rawQuery string) {
	if i := strings.IndexByte(full, '?'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return full, ""
}

// parseQuery decodes a raw query into a map of lists; malformed pairs are kept raw rather
// than dropped, so nothing the client sent is invisible to the policy.
func parseQuery(raw string) map[string][]string {
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

func routeTerm(r *Route) *ast.Term {
	items := make([][2]*ast.Term, 0, 5+len(r.Extra))
	for k, v := range r.Extra {
		switch k {
		case "name", "scopes", "mode": // an extension can't shadow a named field (nor repeat a key)
			continue
		}
		items = append(items, ast.Item(ast.StringTerm(k), ast.StringTerm(v)))
	}
	items = append(items,
		ast.Item(ast.InternedTerm("name"), ast.StringTerm(r.Name)),
		ast.Item(ast.InternedTerm("scopes"), stringsTerm(r.Scopes)),
		ast.Item(ast.InternedTerm("mode"), ast.StringTerm(r.Mode)),
	)
	if r.ACRValues != nil {
		items = append(items, ast.Item(ast.InternedTerm(contract.ExtACRValues), stringsTerm(r.ACRValues)))
	}
	if r.MaxAge != nil {
		items = append(items, ast.Item(ast.InternedTerm(contract.ExtMaxAge), ast.IntNumberTerm(int(*r.MaxAge))))
	}
	return ast.ObjectTerm(items...)
}

func stringsTerm(ss []string) *ast.Term {
	terms := make([]*ast.Term, len(ss))
	for i, s := range ss {
		terms[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(terms...)
}
