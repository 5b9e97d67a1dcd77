package policy

import (
	"encoding/binary"
	"net"
	"slices"
	"strconv"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/contract"
)

// The input a policy sees is defined once, here: every field of input.request (and of the
// peers, input.source and input.destination) and of input.token is a row of requestFields or
// tokenFields, and that row is what builds the field's value (BuildInput, TokenTerm), what
// the static analysis matches a reference against (needs.go), and what keys a decision
// shared between tokens (AppendSharedKey). Adding a field is adding a row.

// View is a CheckRequest as the policy input is built from it: Envoy's :path already split
// into path and query, and one view of the headers.
type View struct {
	Attrs    *authv3.AttributeContext
	HTTP     *authv3.AttributeContext_HttpRequest
	Path     string // :path up to the '?'
	RawQuery string // after the '?'
	// Headers is the request's headers, whichever way Envoy sent them (headers, or
	// header_map with encode_raw_headers): names lower-cased, a repeated header's values
	// joined with ",". Everything reads headers here (the policy input, the credentials,
	// the DPoP proof, the trace context), so no two readers can see different requests.
	Headers map[string]string
	// Route is the route contract (input.route), parsed once: the request's context
	// extensions, or the extensions of the route authz's own table matched (mesh mode).
	// RouteErr is Parse's refusal of them (contract.ErrInvalidRoute), nil when readable.
	Route    contract.RouteExt
	RouteErr error
}

// NewView splits the request Envoy sent and parses its route contract.
func NewView(req *authv3.CheckRequest) View {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	p, q := splitPathQuery(h.GetPath())
	v := View{Attrs: attrs, HTTP: h, Path: p, RawQuery: q, Headers: headerView(h)}
	v.SetRoute(attrs.GetContextExtensions())
	return v
}

// SetRoute makes ext (context extensions) the request's route contract.
func (v *View) SetRoute(ext map[string]string) { v.Route, v.RouteErr = contract.Parse(ext) }

// headerView is h's headers map, as Envoy sends it by default (at no cost); with
// encode_raw_headers Envoy sends header_map instead, which is folded the way Envoy folds the
// map: names lower-cased, repeated values joined with "," (a raw value that is not UTF-8 gets
// U+FFFD, as the map's strings would).
func headerView(h *authv3.AttributeContext_HttpRequest) map[string]string {
	raw := h.GetHeaderMap().GetHeaders()
	if len(raw) == 0 {
		return h.GetHeaders()
	}
	m := make(map[string]string, len(h.GetHeaders())+len(raw))
	for k, v := range h.GetHeaders() {
		m[k] = v
	}
	for _, hv := range raw {
		k, v := strings.ToLower(hv.GetKey()), hv.GetValue()
		if v == "" {
			v = strings.ToValidUTF8(string(hv.GetRawValue()), "\uFFFD")
		}
		if have, ok := m[k]; ok {
			v = have + "," + v
		}
		m[k] = v
	}
	return m
}

// Header is the request's value of the header name (lower case), from Headers.
func (v *View) Header(name string) (string, bool) {
	val, ok := v.Headers[name]
	return val, ok
}

// requestField is one field of input.request, or of a peer document (doc).
type requestField struct {
	// doc is the input document the field is in: "" for input.request, or "source" or
	// "destination" (the downstream peer and the workload Envoy fronts, as Envoy names them).
	doc  string
	name string
	// lazy fields are built only for revisions that read them: converting headers, query
	// and path segments is most of the per-request input cost.
	lazy bool
	// perToken: a decision that reads the field (and no other request field) is still a
	// function of (token, route, method), reusable per token.
	perToken bool
	// byName: the field is a map the analysis tracks by constant key (headers["x-a"]).
	byName bool
	// value is the field's term; nil leaves the field out of the input.
	value func(v View) *ast.Term
	// key is the field's value as a shared decision's key holds it (a byName field is keyed
	// by the values of the names read instead); nil for a field no key can hold.
	key func(v View) keyPart
}

// Request field indexes (bit positions in Fields.Request).
const (
	reqMethod = iota
	reqPath
	reqPathSegments
	reqQuery
	reqHost
	reqScheme
	reqProtocol
	reqHeaders
	reqSourceAddress
	reqPeerSourcePrincipal
	reqPeerSourceAddress
	reqPeerDestinationPrincipal
)

var requestFields = [...]requestField{
	reqMethod: {name: "method", perToken: true,
		value: func(v View) *ast.Term { return ast.StringTerm(v.HTTP.GetMethod()) },
		key:   func(v View) keyPart { return str(v.HTTP.GetMethod()) }},
	reqPath: {name: "path",
		value: func(v View) *ast.Term { return ast.StringTerm(v.Path) },
		key:   func(v View) keyPart { return str(v.Path) }},
	reqPathSegments: {name: "path_segments", lazy: true,
		value: func(v View) *ast.Term { return stringsTerm(splitPath(v.Path)) },
		key:   func(v View) keyPart { return str(v.Path) }},
	reqQuery: {name: "query", lazy: true,
		value: func(v View) *ast.Term { return queryTerm(parseQuery(v.RawQuery)) },
		key:   func(v View) keyPart { return str(v.RawQuery) }},
	reqHost: {name: "host",
		value: func(v View) *ast.Term { return ast.StringTerm(v.HTTP.GetHost()) },
		key:   func(v View) keyPart { return str(v.HTTP.GetHost()) }},
	reqScheme: {name: "scheme",
		value: func(v View) *ast.Term { return ast.StringTerm(v.HTTP.GetScheme()) },
		key:   func(v View) keyPart { return str(v.HTTP.GetScheme()) }},
	reqProtocol: {name: "protocol",
		value: func(v View) *ast.Term { return ast.StringTerm(v.HTTP.GetProtocol()) },
		key:   func(v View) keyPart { return str(v.HTTP.GetProtocol()) }},
	reqHeaders: {name: "headers", lazy: true, byName: true, value: headersTerm},
	reqSourceAddress: {name: "source_address", lazy: true,
		value: func(v View) *ast.Term {
			if a := sourceAddress(v.Attrs); a != "" {
				return ast.StringTerm(a)
			}
			return nil
		},
		key: func(v View) keyPart { return str(sourceAddress(v.Attrs)) }},
	// The peers' identities: with Istio's mutual TLS, the SPIFFE IDs of the calling workload
	// (source) and of the one Envoy fronts (destination), taken by Envoy from the
	// certificates, never from a header. Not per token: one token can come from several
	// workloads.
	reqPeerSourcePrincipal: {doc: "source", name: "principal", lazy: true,
		value: func(v View) *ast.Term { return nonEmpty(v.Attrs.GetSource().GetPrincipal()) },
		key:   func(v View) keyPart { return str(v.Attrs.GetSource().GetPrincipal()) }},
	// input.source.address is the downstream peer's IP address without the port (what a
	// net.cidr_contains rule wants); input.request.source_address keeps ip:port.
	reqPeerSourceAddress: {doc: "source", name: "address", lazy: true,
		value: func(v View) *ast.Term {
			return nonEmpty(v.Attrs.GetSource().GetAddress().GetSocketAddress().GetAddress())
		},
		key: func(v View) keyPart { return str(v.Attrs.GetSource().GetAddress().GetSocketAddress().GetAddress()) }},
	reqPeerDestinationPrincipal: {doc: "destination", name: "principal", lazy: true,
		value: func(v View) *ast.Term { return nonEmpty(v.Attrs.GetDestination().GetPrincipal()) },
		key:   func(v View) keyPart { return str(v.Attrs.GetDestination().GetPrincipal()) }},
}

// peerDocs are the input documents besides input.request that requestFields rows fill.
var peerDocs = [...]string{"source", "destination"}

// path is the field's name under input ("request.method", "source.principal").
func (f *requestField) path() string {
	if f.doc == "" {
		return "request." + f.name
	}
	return f.doc + "." + f.name
}

// nonEmpty is s as a term, or nil (the field is left out) when s is empty.
func nonEmpty(s string) *ast.Term {
	if s == "" {
		return nil
	}
	return ast.StringTerm(s)
}

// tokenField is one field of input.token, built once per verified token.
type tokenField struct {
	name  string
	value func(t *Token) *ast.Term
	// key is the field's value as a shared decision's key holds it; nil for a field no key
	// can hold (claims): a revision that reads it decides per token.
	key func(t Token) keyPart
}

// Token field indexes (bit positions in Fields.Token).
const (
	tokIssuer = iota
	tokIss
	tokSub
	tokClientID
	tokAud
	tokScopes
	tokExp
	tokIat
	tokJTI
	tokBinding
	tokSource
	tokACR
	tokAMR
	tokAuthTime
	tokClaims
)

var tokenFields = [...]tokenField{
	tokIssuer: {name: "issuer",
		value: func(t *Token) *ast.Term { return ast.StringTerm(t.Issuer) },
		key:   func(t Token) keyPart { return str(t.Issuer) }},
	tokIss: {name: "iss",
		value: func(t *Token) *ast.Term { return ast.StringTerm(t.Iss) },
		key:   func(t Token) keyPart { return str(t.Iss) }},
	tokSub: {name: "sub",
		value: func(t *Token) *ast.Term { return ast.StringTerm(t.Sub) },
		key:   func(t Token) keyPart { return str(t.Sub) }},
	tokClientID: {name: "client_id",
		value: func(t *Token) *ast.Term { return ast.StringTerm(t.ClientID) },
		key:   func(t Token) keyPart { return str(t.ClientID) }},
	tokAud: {name: "aud",
		value: func(t *Token) *ast.Term { return stringsTerm(t.Aud) },
		key:   func(t Token) keyPart { return keyPart{list: t.Aud, kind: partList} }},
	tokScopes: {name: "scopes",
		value: func(t *Token) *ast.Term { return stringsTerm(t.Scopes) },
		key:   func(t Token) keyPart { return keyPart{list: t.Scopes, kind: partList} }},
	tokExp: {name: "exp",
		value: func(t *Token) *ast.Term { return ast.IntNumberTerm(int(t.Exp)) },
		key:   func(t Token) keyPart { return keyPart{n: t.Exp, kind: partNumber} }},
	tokIat: {name: "iat",
		value: func(t *Token) *ast.Term { return ast.IntNumberTerm(int(t.Iat)) },
		key:   func(t Token) keyPart { return keyPart{n: t.Iat, kind: partNumber} }},
	tokJTI: {name: "jti",
		value: func(t *Token) *ast.Term { return ast.StringTerm(t.JTI) },
		key:   func(t Token) keyPart { return str(t.JTI) }},
	tokBinding: {name: "binding",
		value: func(t *Token) *ast.Term { return ast.StringTerm(t.Binding) },
		key:   func(t Token) keyPart { return str(t.Binding) }},
	tokSource: {name: "source",
		value: func(t *Token) *ast.Term { return ast.StringTerm(t.Source) },
		key:   func(t Token) keyPart { return str(t.Source) }},
	tokACR: {name: "acr",
		value: func(t *Token) *ast.Term { return ast.StringTerm(t.ACR) },
		key:   func(t Token) keyPart { return str(t.ACR) }},
	tokAMR: {name: "amr",
		value: func(t *Token) *ast.Term { return stringsTerm(t.AMR) },
		key:   func(t Token) keyPart { return keyPart{list: t.AMR, kind: partList} }},
	tokAuthTime: {name: "auth_time",
		value: func(t *Token) *ast.Term { return ast.IntNumberTerm(int(t.AuthTime)) },
		key:   func(t Token) keyPart { return keyPart{n: t.AuthTime, kind: partNumber} }},
	tokClaims: {name: "claims", value: func(t *Token) *ast.Term {
		claims, err := ast.InterfaceToValue(t.Claims)
		if err != nil || t.Claims == nil {
			claims = ast.NewObject()
		}
		return ast.NewTerm(claims)
	}},
}

// BuildInput is the policy input for a request: input.request with the fields reads asks
// for (and every field that costs nothing to build), input.source and input.destination
// when the revision reads one of their fields, input.route from the route contract (v.Route),
// and input.token (tok, from TokenTerm, which callers memoise per token).
func BuildInput(v *View, reads *Fields, tok *ast.Term) ast.Value {
	items := make([][2]*ast.Term, 0, len(requestFields))
	var peers [len(peerDocs)][][2]*ast.Term
	var peerRead [len(peerDocs)]bool
	for i := range requestFields {
		f := &requestFields[i]
		if f.lazy && !reads.Request.has(i) {
			continue
		}
		t := f.value(*v)
		if f.doc == "" {
			if t != nil {
				items = append(items, ast.Item(ast.InternedTerm(f.name), t))
			}
			continue
		}
		d := slices.Index(peerDocs[:], f.doc)
		peerRead[d] = true
		if t != nil {
			peers[d] = append(peers[d], ast.Item(ast.InternedTerm(f.name), t))
		}
	}
	route := RouteOf(&v.Route)
	doc := make([][2]*ast.Term, 0, 3+len(peerDocs))
	doc = append(doc,
		ast.Item(ast.InternedTerm("request"), ast.ObjectTerm(items...)),
		ast.Item(ast.InternedTerm("route"), routeTerm(&route)),
		ast.Item(ast.InternedTerm("token"), tok),
	)
	for d, name := range peerDocs {
		if peerRead[d] {
			doc = append(doc, ast.Item(ast.InternedTerm(name), ast.ObjectTerm(peers[d]...)))
		}
	}
	return ast.NewObject(doc...)
}

// TokenTerm returns the token document for id as an OPA term. The caller memoises it per
// token, so the claims are converted once per token, not once per request.
func TokenTerm(id *token.Identity) *ast.Term {
	t := tokenFrom(id)
	return t.Term()
}

// Term is the token document as an OPA term.
func (t *Token) Term() *ast.Term {
	items := make([][2]*ast.Term, len(tokenFields))
	for i := range tokenFields {
		items[i] = ast.Item(ast.InternedTerm(tokenFields[i].name), tokenFields[i].value(t))
	}
	return ast.ObjectTerm(items...)
}

// AppendSharedKey appends what a shareable revision's decision depends on, unambiguously
// (every string and list length-prefixed): every route extension, sorted (input.route
// carries every one), then the value of each request and token field the revision reads, in
// table order (the field set is the revision's, so equal revisions give equal layouts).
// The caller checks reads.Shareable first.
func AppendSharedKey(b []byte, reads *Fields, v *View, id *token.Identity) []byte {
	ext := v.Route.Raw
	var names [8]string
	keys := names[:0]
	for k := range ext {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, ext[k])
	}
	for i := range requestFields {
		switch f := &requestFields[i]; {
		case !reads.Request.has(i):
		case f.byName:
			b = appendByName(b, v.Headers, reads.HeaderNames)
		default:
			b = f.key(*v).append(b)
		}
	}
	if reads.Token == 0 {
		return b
	}
	tok := tokenWithoutClaims(id) // claims excepted: a revision that reads them is never shareable
	for i := range tokenFields {
		if reads.Token.has(i) {
			b = tokenFields[i].key(tok).append(b)
		}
	}
	return b
}

// keyPart is one field's value in a shared key: a string, a list of strings or a number.
// The key functions return it rather than appending, so the key's buffer never passes
// through a function value (and stays on the caller's stack).
type keyPart struct {
	s    string
	list []string
	n    int64
	kind uint8
}

const (
	partString = iota
	partList
	partNumber
)

func str(s string) keyPart { return keyPart{s: s} }

func (p keyPart) append(b []byte) []byte {
	switch p.kind {
	case partList:
		return appendStrings(b, p.list)
	case partNumber:
		return binary.AppendVarint(b, p.n)
	}
	return appendString(b, p.s)
}

// hiddenHeader is a header the policy never sees: credentials, and pseudo-headers (their
// values are method, path, host and scheme).
func hiddenHeader(name string) bool {
	return name == "authorization" || name == "cookie" || name == "proxy-authorization" || strings.HasPrefix(name, ":")
}

func headersTerm(v View) *ast.Term {
	hs := v.Headers
	items := make([][2]*ast.Term, 0, len(hs))
	for k, val := range hs {
		if hiddenHeader(k) {
			continue
		}
		items = append(items, [2]*ast.Term{ast.StringTerm(k), ast.StringTerm(val)})
	}
	return ast.ObjectTerm(items...)
}

// appendByName keys the headers read by name, as the policy sees them (a hidden header is
// absent, whatever the request holds).
func appendByName(b []byte, hs map[string]string, names []string) []byte {
	for _, name := range names {
		val, ok := hs[name]
		if !ok || hiddenHeader(name) {
			b = append(b, 0)
			continue
		}
		b = append(b, 1)
		b = appendString(b, val)
	}
	return b
}

func queryTerm(q map[string][]string) *ast.Term {
	items := make([][2]*ast.Term, 0, len(q))
	for k, vs := range q {
		items = append(items, [2]*ast.Term{ast.StringTerm(k), stringsTerm(vs)})
	}
	return ast.ObjectTerm(items...)
}

// sourceAddress is input.request.source_address: ip:port of the downstream peer, or "".
func sourceAddress(attrs *authv3.AttributeContext) string {
	sa := attrs.GetSource().GetAddress().GetSocketAddress()
	if sa == nil {
		return ""
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}
