package check

import (
	"encoding/json"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

var okStatus = &rpcstatus.Status{Code: int32(codes.OK)}

// realm is the protection space named in every Bearer challenge (RFC 6750 §3).
const realm = "scopegate"

// denial describes a deny response before it becomes a proto.
type denial struct {
	status      int
	code        codes.Code
	errCode     string // OAuth error code for the body and the challenge ("" for a bare challenge)
	description string
	scope       string // the required scopes, for insufficient_scope
	challenge   bool   // add WWW-Authenticate
	dpop        bool   // the error is about a DPoP-scheme request: the DPoP challenge carries it
	retryAfter  string
	// acrValues (space-separated) and maxAge (seconds) are what a step-up challenge asks for
	// (RFC 9470 §3); "" leaves each out.
	acrValues, maxAge string
	// resourceMetadata is the route's RFC 9728 metadata URL, named in the challenge (§5.1).
	resourceMetadata string
	extra            []*corev3.HeaderValueOption
}

// denialCache holds a service's denials that depend only on fixed strings (bearer and token
// errors), so a flood of bad tokens costs no response building. Proto messages are only
// read once built, so sharing them across Checks is safe. The key set is bounded by our own
// reasons and descriptions.
type denialCache struct {
	m        sync.Map // key string → *authv3.CheckResponse
	dpopAlgs string   // the DPoP proof algorithms, "" when DPoP is not accepted
}

func (c *denialCache) get(key string, d denial) *authv3.CheckResponse {
	if r, ok := c.m.Load(key); ok {
		return r.(*authv3.CheckResponse)
	}
	r := buildDenial(d, c.dpopAlgs)
	c.m.Store(key, r)
	return r
}

// buildDenial makes the response. A 401 challenges for every scheme accepted (RFC 9110
// §11.6.1): Bearer, and DPoP with its algorithms (RFC 9449 §7.1) when dpopAlgs is set; the
// error goes in the challenge of the scheme the client used.
func buildDenial(d denial, dpopAlgs string) *authv3.CheckResponse {
	body, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
		Scope       string `json:"scope,omitempty"`
	}{Error: bodyError(d), Description: d.description, Scope: d.scope})
	headers := []*corev3.HeaderValueOption{header("content-type", "application/json"), header("cache-control", "no-store")}
	if d.challenge {
		switch {
		case d.dpop:
			headers = append(headers, header("www-authenticate", dpopChallenge(dpopAlgs, d)), appendHeader("www-authenticate", challenge(denial{resourceMetadata: d.resourceMetadata})))
		case dpopAlgs != "" && d.status == 401:
			headers = append(headers, header("www-authenticate", challenge(d)), appendHeader("www-authenticate", dpopChallenge(dpopAlgs, denial{resourceMetadata: d.resourceMetadata})))
		default:
			headers = append(headers, header("www-authenticate", challenge(d)))
		}
	}
	if d.retryAfter != "" {
		headers = append(headers, header("retry-after", d.retryAfter))
	}
	headers = append(headers, d.extra...)
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(d.code), Message: d.errCode},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.status)},
			Headers: headers,
			Body:    string(body),
		}},
	}
}

func bodyError(d denial) string {
	if d.errCode != "" {
		return d.errCode
	}
	if d.status == 401 {
		return "unauthorized"
	}
	return "server_error"
}

// challenge builds an RFC 6750 §3 WWW-Authenticate value.
func challenge(d denial) string { return authParams("Bearer realm", realm, d, true) }

// dpopChallenge builds an RFC 9449 §7.1 WWW-Authenticate value (no scope parameter there).
func dpopChallenge(algs string, d denial) string { return authParams("DPoP algs", algs, d, false) }

// authParams writes a challenge: its first parameter, then the error, its description, the
// scope (withScope), the step-up requirements (RFC 9470 §3: acr_values, max_age) and the RFC
// 9728 metadata URL, each where set. Every value is a quoted-string (RFC 9110 §5.6.4).
// Descriptions are our own fixed strings; scopes, acr values and the metadata URL were checked
// where they came in (config, route extension, policy decision); quotedString guarantees the
// header anyway.
func authParams(first, value string, d denial, withScope bool) string {
	var b strings.Builder
	param := func(name, v string) {
		b.WriteString(name)
		b.WriteByte('=')
		quotedString(&b, v)
	}
	param(first, value)
	if d.errCode != "" {
		param(", error", d.errCode)
		if d.description != "" {
			param(", error_description", d.description)
		}
	}
	if withScope && d.scope != "" {
		param(", scope", d.scope)
	}
	if d.acrValues != "" {
		param(", acr_values", d.acrValues)
	}
	if d.maxAge != "" {
		param(", max_age", d.maxAge)
	}
	if d.resourceMetadata != "" {
		param(", resource_metadata", d.resourceMetadata)
	}
	return b.String()
}

// quotedString writes s as an RFC 9110 quoted-string: '"' and '\' escaped with a backslash,
// and every byte a header value can't hold as it is (controls, DEL, non-ASCII) dropped, so
// nothing in s can end the parameter early, add a parameter, or start a header line.
func quotedString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\t' || (c >= 0x20 && c < 0x7f):
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// appendHeader adds a value beside any of the same name (a second challenge).
func appendHeader(name, value string) *corev3.HeaderValueOption {
	h := header(name, value)
	h.AppendAction = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
	return h
}

func header(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
