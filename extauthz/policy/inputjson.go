package policy

import (
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/jsonenc"
)

// The decision log carries the input of a decision so that `scopegate policy impact` can
// replay it. Building that input as OPA values and then writing them out cost ~37 µs and ~200
// allocations per line, more than the rest of a warm Check; AppendInputJSON writes the same
// document (every field, keys sorted, as OPA would write BuildInput's value) straight from the
// request, and the token's part, which is the same for every request of a token, is encoded
// once per token (AppendTokenJSON). TestInputJSONMatchesBuildInput holds the two together.

// HeaderFilter says which request headers the decision log leaves out, beyond those no policy
// ever sees: a header whose name it hides, and (so that a credential copied into another
// header is not logged either) any header whose value holds a hidden header's value.
type HeaderFilter struct {
	// Names are lower-case header names, matched without regard to case.
	Names []string
}

// minSecretLen is the shortest hidden value looked for inside other headers: shorter ones
// ("a=1") would hide innocent headers and are no credential worth copying.
const minSecretLen = 8

// credentialHeaders never reach a policy (hiddenHeader); the log hides them whatever their
// case, since not every client lower-cases names as Envoy does.
var credentialHeaders = [...]string{"authorization", "cookie", "proxy-authorization"}

// hidesValue reports whether name is a header whose value the log never holds: a credential
// or a header the filter names.
func (f *HeaderFilter) hidesValue(name string) bool {
	// Header names are ASCII tokens (Envoy refuses others), whose case folding keeps their
	// length: comparing lengths first skips most names at once.
	for _, n := range credentialHeaders {
		if len(n) == len(name) && strings.EqualFold(n, name) {
			return true
		}
	}
	if f == nil {
		return false
	}
	for _, n := range f.Names {
		if len(n) == len(name) && strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// AppendInputJSON appends the policy input of a request (every field: what BuildInput makes
// with AllFields) as JSON, with the token document tokenJSON (from AppendTokenJSON) and the
// request headers hide leaves out also left out.
func AppendInputJSON(b []byte, v *View, tokenJSON []byte, hide *HeaderFilter) []byte {
	// Keys in sorted order, as OPA writes an object (the test holds the two byte for byte).
	b = append(b, `{"destination":{`...)
	b = appendOptionalJSON(b, "principal", v.Attrs.GetDestination().GetPrincipal(), true)
	b = append(b, `},"request":{"headers":`...)
	b = appendHeadersJSON(b, v.Headers, hide)
	b = append(b, `,"host":`...)
	b = jsonenc.AppendString(b, v.HTTP.GetHost())
	b = append(b, `,"method":`...)
	b = jsonenc.AppendString(b, v.HTTP.GetMethod())
	b = append(b, `,"path":`...)
	b = jsonenc.AppendString(b, v.Path)
	b = append(b, `,"path_segments":`...)
	b = appendSegmentsJSON(b, v.Path)
	b = append(b, `,"protocol":`...)
	b = jsonenc.AppendString(b, v.HTTP.GetProtocol())
	b = append(b, `,"query":`...)
	b = appendQueryJSON(b, v.RawQuery)
	b = append(b, `,"scheme":`...)
	b = jsonenc.AppendString(b, v.HTTP.GetScheme())
	if sa := v.Attrs.GetSource().GetAddress().GetSocketAddress(); sa != nil {
		// sourceAddress, without building the string: net.JoinHostPort's form.
		b = append(b, `,"source_address":`...)
		start := len(b)
		b = jsonenc.AppendString(b, sa.GetAddress())
		if strings.IndexByte(sa.GetAddress(), ':') >= 0 { // IPv6: "[addr]:port"
			b[start] = '['
			b[len(b)-1] = ']'
			b = append(b, '"')
			copy(b[start+1:], b[start:len(b)-1])
			b[start] = '"'
		} else {
			b = b[:len(b)-1] // reopen the string
		}
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(sa.GetPortValue()), 10)
		b = append(b, '"')
	}
	b = append(b, `},"route":`...)
	b = appendRouteJSON(b, &v.Route)
	b = append(b, `,"source":{`...)
	src := v.Attrs.GetSource()
	first := appendOptionalJSON(b, "address", src.GetAddress().GetSocketAddress().GetAddress(), true)
	b = appendOptionalJSON(first, "principal", src.GetPrincipal(), len(first) == len(b))
	b = append(b, `},"token":`...)
	b = append(b, tokenJSON...)
	return append(b, '}')
}

// appendOptionalJSON appends "name":"value" inside an object when value is not empty (the
// peer documents leave out what Envoy did not send), with a comma unless first.
func appendOptionalJSON(b []byte, name, value string, first bool) []byte {
	if value == "" {
		return b
	}
	if !first {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, `":`...)
	return jsonenc.AppendString(b, value)
}

func appendHeadersJSON(b []byte, hs map[string]string, hide *HeaderFilter) []byte {
	// One pass sorts out the names to write and the hidden values to look for in them.
	var kbuf [32]string
	var sbuf [4]string
	keys, secrets := kbuf[:0], sbuf[:0]
	for k, v := range hs {
		switch {
		case hide.hidesValue(k):
			if len(v) >= minSecretLen {
				secrets = append(secrets, v)
			}
		case !hiddenHeader(k):
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	b = append(b, '{')
	first := true
next:
	for _, k := range keys {
		val := hs[k]
		for _, s := range secrets {
			if strings.Contains(val, s) {
				continue next
			}
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = jsonenc.AppendString(b, k)
		b = append(b, ':')
		b = jsonenc.AppendString(b, val)
	}
	return append(b, '}')
}

// appendSegmentsJSON appends splitPath(p) without building the slice.
func appendSegmentsJSON(b []byte, p string) []byte {
	p = strings.TrimPrefix(p, "/")
	b = append(b, '[')
	for i := 0; ; i++ {
		seg, rest, more := strings.Cut(p, "/")
		if i > 0 {
			b = append(b, ',')
		}
		if strings.IndexByte(seg, '%') >= 0 {
			if d, err := url.PathUnescape(seg); err == nil {
				seg = d
			}
		}
		b = jsonenc.AppendString(b, seg)
		if !more {
			break
		}
		p = rest
	}
	return append(b, ']')
}

// queryPair is one decoded name=value of a query string.
type queryPair struct{ k, v string }

// appendQueryJSON appends parseQuery(raw) as an object of lists, names sorted, each name's
// values in the order the client sent them.
func appendQueryJSON(b []byte, raw string) []byte {
	if raw == "" {
		return append(b, "{}"...)
	}
	var pbuf [16]queryPair
	pairs := pbuf[:0]
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if strings.ContainsAny(k, "%+") {
			if dk, err := url.QueryUnescape(k); err == nil {
				k = dk
			}
		}
		if strings.ContainsAny(v, "%+") {
			if dv, err := url.QueryUnescape(v); err == nil {
				v = dv
			}
		}
		pairs = append(pairs, queryPair{k, v})
	}
	slices.SortStableFunc(pairs, func(a, b queryPair) int { return strings.Compare(a.k, b.k) })
	b = append(b, '{')
	for i, p := range pairs {
		switch {
		case i == 0:
		case pairs[i-1].k == p.k:
			b = append(b, ',')
			b = jsonenc.AppendString(b, p.v)
			continue
		default:
			b = append(b, "],"...)
		}
		b = jsonenc.AppendString(b, p.k)
		b = append(b, ":["...)
		b = jsonenc.AppendString(b, p.v)
	}
	if len(pairs) > 0 {
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendRouteJSON appends input.route (RouteOf, routeTerm) of the route contract.
func appendRouteJSON(b []byte, r *contract.RouteExt) []byte {
	ext := r.Raw
	var kbuf [16]string
	keys := kbuf[:0]
	for k := range ext {
		switch k {
		case contract.ExtRoute, contract.ExtScopes, contract.ExtMode:
		default:
			keys = append(keys, k)
		}
	}
	// The named fields win over an extension of the same name, as in routeTerm.
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == "mode" || k == "name" || k == "scopes" })
	keys = append(keys, "mode", "name", "scopes")
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonenc.AppendString(b, k)
		b = append(b, ':')
		switch k {
		case "mode":
			b = jsonenc.AppendString(b, r.Mode)
		case "name":
			b = jsonenc.AppendString(b, r.Name)
		case "scopes":
			b = appendFieldsJSON(b, r.Scopes)
		case contract.ExtACRValues: // a list, as RouteOf reads it
			b = appendFieldsJSON(b, ext[k])
		case contract.ExtMaxAge: // a number of seconds; unreadable, the string as it came
			if r.MaxAge != "" {
				b = strconv.AppendInt(b, r.MaxAgeSeconds, 10)
			} else {
				b = jsonenc.AppendString(b, ext[k])
			}
		default:
			b = jsonenc.AppendString(b, ext[k])
		}
	}
	return append(b, '}')
}

// appendFieldsJSON appends the space-separated values of s as a JSON array of strings.
func appendFieldsJSON(b []byte, s string) []byte {
	b = append(b, '[')
	j := 0
	for f := range strings.FieldsSeq(s) {
		if j > 0 {
			b = append(b, ',')
		}
		b = jsonenc.AppendString(b, f)
		j++
	}
	return append(b, ']')
}

// AppendTokenJSON appends input.token for id as JSON (what TokenTerm makes, written out),
// without building OPA values. It decodes the token's claims if nothing has yet, so it is paid
// once per token: callers memoise its result.
func AppendTokenJSON(b []byte, id *token.Identity) []byte {
	t := tokenWithoutClaims(id)
	// The fields of tokenFields, keys sorted.
	b = append(b, `{"acr":`...)
	b = jsonenc.AppendString(b, t.ACR)
	b = append(b, `,"amr":`...)
	b = jsonenc.AppendStrings(b, t.AMR)
	b = append(b, `,"aud":`...)
	b = jsonenc.AppendStrings(b, t.Aud)
	b = append(b, `,"auth_time":`...)
	b = strconv.AppendInt(b, t.AuthTime, 10)
	b = append(b, `,"binding":`...)
	b = jsonenc.AppendString(b, t.Binding)
	b = append(b, `,"claims":`...)
	if claims := id.Claims(); claims != nil {
		b = appendAnyJSON(b, claims)
	} else {
		b = append(b, "{}"...)
	}
	b = append(b, `,"client_id":`...)
	b = jsonenc.AppendString(b, t.ClientID)
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, t.Exp, 10)
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, t.Iat, 10)
	b = append(b, `,"iss":`...)
	b = jsonenc.AppendString(b, t.Iss)
	b = append(b, `,"issuer":`...)
	b = jsonenc.AppendString(b, t.Issuer)
	b = append(b, `,"jti":`...)
	b = jsonenc.AppendString(b, t.JTI)
	b = append(b, `,"scopes":`...)
	b = jsonenc.AppendStrings(b, t.Scopes)
	b = append(b, `,"source":`...)
	b = jsonenc.AppendString(b, t.Source)
	b = append(b, `,"sub":`...)
	b = jsonenc.AppendString(b, t.Sub)
	return append(b, '}')
}

// appendAnyJSON appends a decoded JSON value as OPA's InterfaceToValue would represent it
// (object keys sorted, a float64 in Go's shortest 'g' form); a type JSON decoding never makes
// (claims given to `scopegate check`) goes through OPA's conversion.
func appendAnyJSON(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, x)
	case string:
		return jsonenc.AppendString(b, x)
	case float64:
		return strconv.AppendFloat(b, x, 'g', -1, 64)
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendAnyJSON(b, e)
		}
		return append(b, ']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonenc.AppendString(b, k)
			b = append(b, ':')
			b = appendAnyJSON(b, x[k])
		}
		return append(b, '}')
	}
	val, err := ast.InterfaceToValue(v)
	if err != nil {
		return append(b, "null"...)
	}
	return AppendValueJSON(b, val)
}

// AppendValueJSON appends an input value as JSON, object keys sorted. The input holds
// objects with string keys, arrays, strings, numbers, booleans and null (claims are JSON to
// begin with); anything else would be a bug, written as null.
func AppendValueJSON(b []byte, v ast.Value) []byte {
	switch x := v.(type) {
	case ast.String:
		return jsonenc.AppendString(b, string(x))
	case ast.Number:
		return append(b, x...)
	case ast.Boolean:
		return strconv.AppendBool(b, bool(x))
	case *ast.Array:
		b = append(b, '[')
		for i := range x.Len() {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendValueJSON(b, x.Elem(i).Value)
		}
		return append(b, ']')
	case ast.Object:
		b = append(b, '{')
		first := true
		for _, k := range x.Keys() { // sorted: lines are stable, goldens of them possible
			ks, ok := k.Value.(ast.String)
			if !ok {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = jsonenc.AppendString(b, string(ks))
			b = append(b, ':')
			b = AppendValueJSON(b, x.Get(k).Value)
		}
		return append(b, '}')
	}
	return append(b, "null"...)
}
