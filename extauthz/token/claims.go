package token

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fastjson"

	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/internal/contract"
)

// accessClaims is what the verifier reads of a token's claims set, decoded in one pass by
// exact, case-sensitive name. jwt/v5's Validator checks it through the jwt.Claims getters,
// which fail on a wrong type exactly where jwt.MapClaims would.
//
// Decoding every claim into a map[string]any took most of a cold token's cost after the
// signature (~10 µs, 45 allocations for a typical access token) and kept a pointer-dense map
// alive per cached token; the whole claims object is now decoded only when a policy reads
// input.token.claims (Identity.Claims). Struct decoding with encoding/json is no alternative:
// it matches names case-insensitively, so an IdP-signed custom claim "Scope" would count as
// "scope".
type accessClaims struct {
	names *claimNames

	raw []byte // the payload, for Identity.Claims

	iss, sub, jti string
	aud           jwt.ClaimStrings
	exp, iat, nbf *jwt.NumericDate
	scopes        []string
	clientID      string
	// badScope names a configured scope claim of the wrong type ("" if none): the token is
	// malformed, not merely without scopes (RFC 9068 §2.2.3, RFC 8693 §4.2).
	badScope string
	// jkt and x5t are the confirmation claim's key thumbprint (RFC 9449 §6.1) and
	// certificate thumbprint (RFC 8705 §3.1); badCnf is set when cnf is malformed.
	jkt, x5t string
	badCnf   bool
	// acr, amr and authTime describe the user's authentication (OpenID Connect Core §2, RFC
	// 9068 §2.2.1), which routes may require (RFC 9470); badAuthn is set when one of them has
	// the wrong type.
	acr      string
	amr      []string
	authTime *jwt.NumericDate
	badAuthn *denial.Denial
	// errs holds, per registered claim, why it is unusable (wrong JSON type); the getter of
	// that claim returns it.
	errs map[string]error
}

// claimNames are an issuer's configured scope and client-id claim names.
type claimNames struct {
	scope, clientID []string
}

var parsers fastjson.ParserPool

// errDuplicateClaim refuses a claims set that names a claim twice. RFC 7519 §4 lets a
// parser reject duplicates or take the last one; rejecting means no two readers of the same
// token (scopegate, the upstream, a policy reading claims) can disagree on its claims.
var errDuplicateClaim = errors.New("duplicate claim name")

// UnmarshalJSON decodes a claims set (IdentityFromClaims and tests; the verifier parses the
// payload itself and calls read).
func (c *accessClaims) UnmarshalJSON(data []byte) error {
	p := parsers.Get()
	defer parsers.Put(p)
	obj, err := parseObject(p, data)
	if err != nil {
		return fmt.Errorf("the claims set is not a JSON object: %w", err)
	}
	return c.read(obj, append([]byte(nil), data...))
}

// read takes the claims from obj, a parse of raw; raw is kept (not copied) for
// Identity.Claims.
func (c *accessClaims) read(obj *fastjson.Object, raw []byte) error {
	if name := duplicateKey(obj); name != "" {
		return fmt.Errorf("%w %q", errDuplicateClaim, name)
	}
	c.raw = raw

	if v := obj.Get("iss"); v != nil {
		c.iss = c.str("iss", v)
	}
	if v := obj.Get("sub"); v != nil {
		c.sub = c.str("sub", v)
	}
	c.jti, _ = stringOf(obj.Get("jti"))
	if v := obj.Get("aud"); v != nil {
		c.aud = c.audience(v)
	}
	if v := obj.Get("exp"); v != nil {
		c.exp = c.date("exp", v)
	}
	if v := obj.Get("iat"); v != nil {
		c.iat = c.date("iat", v)
	}
	if v := obj.Get("nbf"); v != nil {
		c.nbf = c.date("nbf", v)
	}
	c.scopes, c.badScope = scopesOf(obj, c.names.scope)
	if v := obj.Get("cnf"); v != nil {
		c.jkt, c.x5t, c.badCnf = cnfOf(v)
	}
	c.acr, c.amr, c.authTime, c.badAuthn = authnOf(obj)
	for _, name := range c.names.clientID {
		if s, ok := stringOf(obj.Get(name)); ok && s != "" {
			c.clientID = s
			break
		}
	}
	return nil
}

// duplicateKey returns a member name that appears twice in obj, or "". The claims are read
// before the signature is checked, so the cost must stay linear whatever an attacker sends.
func duplicateKey(obj *fastjson.Object) string {
	var dup string
	if obj.Len() <= 16 {
		var buf [16][]byte
		keys := buf[:0]
		obj.Visit(func(k []byte, _ *fastjson.Value) {
			for _, have := range keys {
				if dup == "" && string(have) == string(k) {
					dup = string(k)
				}
			}
			keys = append(keys, k)
		})
		return dup
	}
	seen := make(map[string]struct{}, obj.Len())
	obj.Visit(func(k []byte, _ *fastjson.Value) {
		if _, ok := seen[string(k)]; ok && dup == "" {
			dup = string(k)
		}
		seen[string(k)] = struct{}{}
	})
	return dup
}

// stringOf is v's string value; ok is false when v is absent or not a string.
func stringOf(v *fastjson.Value) (string, bool) {
	if v == nil || v.Type() != fastjson.TypeString {
		return "", false
	}
	b, _ := v.StringBytes()
	if !utf8.Valid(b) {
		return replaceInvalidUTF8(b), true
	}
	return string(b), true
}

// replaceInvalidUTF8 replaces each invalid byte with U+FFFD, as encoding/json does: claim
// values end up in protobuf strings (identity headers), which must be valid UTF-8.
func replaceInvalidUTF8(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			sb.WriteString("\uFFFD")
		} else {
			sb.Write(b[:n])
		}
		b = b[n:]
	}
	return sb.String()
}

func (c *accessClaims) fail(name string) {
	if c.errs == nil {
		c.errs = map[string]error{}
	}
	c.errs[name] = fmt.Errorf("%w: %s", jwt.ErrInvalidType, name)
}

// str reads a registered string claim (iss, sub): anything but a string is an error.
func (c *accessClaims) str(name string, v *fastjson.Value) string {
	s, ok := stringOf(v)
	if !ok {
		c.fail(name)
	}
	return s
}

// date reads a NumericDate (RFC 7519 §2), by jwt.MapClaims' rules: a JSON number of
// seconds, fractions kept to jwt.TimePrecision; 0 counts as absent; any other type is an
// error.
func (c *accessClaims) date(name string, v *fastjson.Value) *jwt.NumericDate {
	if v.Type() != fastjson.TypeNumber {
		c.fail(name)
		return nil
	}
	f, err := v.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		c.fail(name)
		return nil
	}
	if f == 0 {
		return nil
	}
	sec, frac := math.Modf(f)
	return jwt.NewNumericDate(time.Unix(int64(sec), int64(frac*1e9)))
}

// audience reads aud by jwt.MapClaims' rules: one string, or a list of strings (a non-string
// item is an error); any other type counts as no audience, which the required-aud check
// then refuses.
func (c *accessClaims) audience(v *fastjson.Value) jwt.ClaimStrings {
	switch v.Type() {
	case fastjson.TypeString:
		s, _ := stringOf(v)
		return jwt.ClaimStrings{s}
	case fastjson.TypeArray:
		items, _ := v.Array()
		var out jwt.ClaimStrings
		for _, it := range items {
			s, ok := stringOf(it)
			if !ok {
				c.fail("aud")
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	return nil
}

// scopesOf merges the configured scope claims, in configured order, without duplicates: a
// space-delimited string (RFC 8693 "scope") or a list of strings ("scp"). A claim of any
// other type, or a list holding a non-string, is named in bad: the caller refuses the token
// rather than read it as "no scopes".
func scopesOf(obj *fastjson.Object, names []string) (scopes []string, bad string) {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		for _, have := range out {
			if have == s {
				return
			}
		}
		out = append(out, s)
	}
	for _, name := range names {
		v := obj.Get(name)
		if v == nil {
			continue
		}
		switch v.Type() {
		case fastjson.TypeString:
			s, _ := stringOf(v)
			for f := range strings.FieldsSeq(s) {
				add(f)
			}
		case fastjson.TypeArray:
			items, _ := v.Array()
			for _, it := range items {
				s, ok := stringOf(it)
				if !ok {
					return []string{}, name
				}
				add(s)
			}
		default:
			return []string{}, name
		}
	}
	if out == nil {
		out = []string{}
	}
	return out, ""
}

// cnfOf reads the confirmation claim: an object holding a confirmation method scopegate
// checks (jkt, RFC 9449 §6.1; x5t#S256, RFC 8705 §3.1) as a non-empty string, and nothing
// else. Anything else (no member at all, a jwk or kid method we can't check, a member name in
// another case, a value of the wrong type) binds the token to something we could not verify:
// it is refused, never taken for an unbound bearer token.
func cnfOf(v *fastjson.Value) (jkt, x5t string, bad bool) {
	obj, err := v.Object()
	if err != nil {
		return "", "", true
	}
	obj.Visit(func(k []byte, mv *fastjson.Value) {
		var to *string
		switch string(k) {
		case "jkt":
			to = &jkt
		case "x5t#S256":
			to = &x5t
		default:
			bad = true
			return
		}
		s, ok := stringOf(mv)
		if !ok || s == "" {
			bad = true
			return
		}
		*to = s
	})
	if bad || (jkt == "" && x5t == "") {
		return "", "", true
	}
	return jkt, x5t, false
}

// authnOf reads the authentication claims: acr a string, amr an array of strings, auth_time a
// NumericDate (a JSON number; 0 counts as absent). A null counts as absent; any other type
// refuses the token as malformed, as a wrong-typed exp does: a route requiring a second factor
// must never read a claim it can't understand as "none", nor the policy see a guess.
func authnOf(obj *fastjson.Object) (acr string, amr []string, authTime *jwt.NumericDate, bad *denial.Denial) {
	if v := obj.Get("acr"); v != nil && v.Type() != fastjson.TypeNull {
		s, ok := stringOf(v)
		if !ok {
			return "", nil, nil, errBadACR
		}
		acr = s
	}
	if v := obj.Get("amr"); v != nil && v.Type() != fastjson.TypeNull {
		items, err := v.Array()
		if err != nil {
			return "", nil, nil, errBadAMR
		}
		amr = make([]string, 0, len(items))
		for _, it := range items {
			s, ok := stringOf(it)
			if !ok {
				return "", nil, nil, errBadAMR
			}
			amr = append(amr, s)
		}
	}
	if v := obj.Get("auth_time"); v != nil && v.Type() != fastjson.TypeNull {
		f, err := v.Float64()
		if v.Type() != fastjson.TypeNumber || err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return "", nil, nil, errBadAuthTime
		}
		if f != 0 {
			sec, frac := math.Modf(f)
			authTime = jwt.NewNumericDate(time.Unix(int64(sec), int64(frac*1e9)))
		}
	}
	return acr, amr, authTime, nil
}

var (
	errBadACR      = refuse(contract.ReasonMalformed, "the acr claim is not a string")
	errBadAMR      = refuse(contract.ReasonMalformed, "the amr claim is not an array of strings")
	errBadAuthTime = refuse(contract.ReasonMalformed, "the auth_time claim is not a time (seconds since the epoch)")
)

// errBadCnf refuses a token whose confirmation claim is malformed or names no method
// scopegate checks.
var errBadCnf = refuse(contract.ReasonMalformed, "the cnf claim holds no confirmation method scopegate checks (jkt or x5t#S256 thumbprints only)")

// scopeClaimError refuses a token whose scope claim has the wrong type.
func scopeClaimError(name string) *denial.Denial {
	return refuse(contract.ReasonMalformed, fmt.Sprintf("the %s claim is not a space-delimited string or an array of strings", name))
}

// The jwt.Claims getters: a claim of the wrong type fails validation as it would with
// jwt.MapClaims (jwt.ErrInvalidType).

func (c *accessClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.exp, c.errs["exp"] }
func (c *accessClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.iat, c.errs["iat"] }
func (c *accessClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.nbf, c.errs["nbf"] }
func (c *accessClaims) GetIssuer() (string, error)                   { return c.iss, c.errs["iss"] }
func (c *accessClaims) GetSubject() (string, error)                  { return c.sub, c.errs["sub"] }
func (c *accessClaims) GetAudience() (jwt.ClaimStrings, error)       { return c.aud, c.errs["aud"] }
