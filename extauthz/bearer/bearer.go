// Package bearer takes an OAuth 2.0 access token out of a request's Authorization header,
// per RFC 6750 §2.1 (the Bearer scheme) and RFC 9449 §7.1 (the DPoP scheme), and refuses
// every other way of presenting one.
package bearer

import (
	"net/url"
	"strings"

	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/internal/contract"
)

// Scheme is how the token was presented.
type Scheme uint8

const (
	// SchemeBearer: "Authorization: Bearer <token>" (RFC 6750).
	SchemeBearer Scheme = iota
	// SchemeDPoP: "Authorization: DPoP <token>" with a DPoP proof header (RFC 9449).
	SchemeDPoP
)

func (s Scheme) String() string {
	if s == SchemeDPoP {
		return "DPoP"
	}
	return "Bearer"
}

// DefaultMaxBytes is the default size limit of a token.
const DefaultMaxBytes = 8 << 10

// Refusals: a request with no bearer credentials gets a bare challenge (RFC 6750 §3.1 says
// it has no error code); every other is a malformed request (400 invalid_request).
var (
	errMissing       = denial.New(denial.Unauthorized, contract.ReasonMissingToken, "no bearer token in the request")
	errOtherScheme   = denial.New(denial.Unauthorized, contract.ReasonMissingToken, "the Authorization scheme is not Bearer or DPoP")
	errSeveral       = denial.New(denial.InvalidRequest, contract.ReasonInvalidRequest, "more than one Authorization header")
	errMalformed     = denial.New(denial.InvalidRequest, contract.ReasonInvalidRequest, "malformed credentials in the Authorization header")
	errTooLarge      = denial.New(denial.InvalidRequest, contract.ReasonTokenTooLarge, "the bearer token exceeds the size limit")
	errInQuery       = denial.New(denial.InvalidRequest, contract.ReasonInvalidRequest, "access tokens are not accepted in the query string")
	errNotSingleLine = denial.New(denial.InvalidRequest, contract.ReasonInvalidRequest, "the Authorization header holds several values")
)

// Request is what Extract reads: the Authorization values (as Envoy lists them) and the raw query.
type Request struct {
	// Authorization holds the header's values; Envoy joins repeated headers with ",", and
	// sends them apart only with encode_raw_headers, so both forms must fail.
	Authorization []string
	RawQuery      string
}

// Extract returns the token and its scheme, or a *denial.Denial; with an error, the scheme is the
// one the client named when it named Bearer or DPoP (so the refusal goes in that scheme's
// challenge), SchemeBearer otherwise. maxBytes <= 0 means DefaultMaxBytes.
func Extract(r Request, maxBytes int) (string, Scheme, error) {
	first := ""
	if len(r.Authorization) > 0 {
		first = r.Authorization[0]
	}
	return ExtractFirst(first, len(r.Authorization), r.RawQuery, maxBytes)
}

// ExtractFirst is Extract for a request that sent n Authorization values, the first being
// first: the Check path counts them without building a slice on every request.
func ExtractFirst(first string, n int, rawQuery string, maxBytes int) (string, Scheme, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if queryHasToken(rawQuery) {
		return "", 0, errInQuery
	}
	switch n {
	case 0:
		return "", 0, errMissing
	case 1:
	default:
		return "", 0, errSeveral
	}
	h := first
	if h == "" {
		return "", 0, errMissing
	}
	if strings.IndexByte(h, ',') >= 0 {
		return "", 0, errNotSingleLine
	}
	name, rest, found := strings.Cut(h, " ")
	var scheme Scheme
	switch {
	case strings.EqualFold(name, "Bearer"):
		scheme = SchemeBearer
	case strings.EqualFold(name, "DPoP"):
		scheme = SchemeDPoP
	case name == "" || !isToken(name):
		return "", 0, errMalformed
	default:
		return "", 0, errOtherScheme
	}
	if !found {
		return "", scheme, errMalformed
	}
	// RFC 6750 (and RFC 9449 §7.1, alike): scheme 1*SP b64token. Only spaces separate; the
	// token ends the header.
	tok := strings.TrimLeft(rest, " ")
	if len(tok) > maxBytes {
		return "", scheme, errTooLarge
	}
	if !isB64Token(tok) {
		return "", scheme, errMalformed
	}
	return tok, scheme, nil
}

// b64tokenChars marks the b64token alphabet; a table keeps the per-byte check branch-free,
// and tokens run to a kilobyte or more on every request.
var b64tokenChars = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/") {
		t[c] = true
	}
	return t
}()

// isB64Token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" (RFC 6750 §2.1).
func isB64Token(s string) bool {
	if s == "" {
		return false
	}
	i := 0
	for i < len(s) && b64tokenChars[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 9110 token (an auth-scheme name).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// queryHasToken reports whether the query string carries an access_token parameter (RFC 6750
// §2.3), in any percent-encoding of its name, without allocating on the common path.
func queryHasToken(q string) bool {
	if q == "" {
		return false
	}
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		name, _, _ := strings.Cut(pair, "=")
		if strings.IndexByte(name, '%') >= 0 || strings.IndexByte(name, '+') >= 0 {
			if n, err := url.QueryUnescape(name); err == nil {
				name = n
			}
		}
		if name == "access_token" {
			return true
		}
	}
	return false
}
