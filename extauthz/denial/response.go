package denial

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

// Realm is the protection space named in every Bearer challenge (RFC 6750 §3).
const Realm = "scopegate"

// Response is Envoy's answer to d: the status, a JSON body with the OAuth error, and the
// headers. A 401 challenges for every scheme accepted (RFC 9110 §11.6.1): Bearer, and DPoP
// with its algorithms (RFC 9449 §7.1) when dpopAlgs is set ("" when DPoP is not accepted);
// the error goes in the challenge of the scheme the client used.
func (d *Denial) Response(dpopAlgs string) *authv3.CheckResponse {
	c := d.class()
	status := d.HTTPStatus()
	oauthError := c.oauthError
	body, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
		Scope       string `json:"scope,omitempty"`
	}{Error: bodyError(oauthError, status), Description: d.Description, Scope: d.Scope})
	headers := []*corev3.HeaderValueOption{HeaderOption("content-type", "application/json"), HeaderOption("cache-control", "no-store")}
	if c.challenge {
		bare := &Denial{Kind: Unauthorized, ResourceMetadata: d.ResourceMetadata}
		switch {
		case (d.DPoP || c.dpop) && dpopAlgs != "":
			headers = append(headers, HeaderOption("www-authenticate", dpopChallenge(dpopAlgs, d)), appendHeader("www-authenticate", bearerChallenge(bare)))
		case dpopAlgs != "" && status == 401:
			headers = append(headers, HeaderOption("www-authenticate", bearerChallenge(d)), appendHeader("www-authenticate", dpopChallenge(dpopAlgs, bare)))
		default:
			headers = append(headers, HeaderOption("www-authenticate", bearerChallenge(d)))
		}
	}
	retry := c.retryAfter
	if d.RetryAfter != 0 {
		retry = d.RetryAfter
	}
	if retry > 0 {
		headers = append(headers, HeaderOption("retry-after", strconv.FormatInt(int64(retry.Round(time.Second)/time.Second), 10)))
	}
	if d.Nonce != "" {
		headers = append(headers, HeaderOption("dpop-nonce", d.Nonce))
	}
	for _, h := range d.Headers {
		headers = append(headers, HeaderOption(h.Name, h.Value))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(d.grpcCode()), Message: oauthError},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
			Headers: headers,
			Body:    string(body),
		}},
	}
}

func bodyError(oauthError string, status int) string {
	if oauthError != "" {
		return oauthError
	}
	if status == 401 {
		return "unauthorized"
	}
	return "server_error"
}

// bearerChallenge builds an RFC 6750 §3 WWW-Authenticate value.
func bearerChallenge(d *Denial) string { return authParams("Bearer realm", Realm, d, true) }

// dpopChallenge builds an RFC 9449 §7.1 WWW-Authenticate value (no scope parameter there).
func dpopChallenge(algs string, d *Denial) string { return authParams("DPoP algs", algs, d, false) }

// authParams writes a challenge: its first parameter, then the error, its description, the
// scope (withScope), the step-up requirements (RFC 9470 §3: acr_values, max_age) and the RFC
// 9728 metadata URL, each where set. Every value is a quoted-string (RFC 9110 §5.6.4).
// Descriptions are our own fixed strings; scopes, acr values and the metadata URL were checked
// where they came in (config, route contract, policy decision); quotedString guarantees the
// header anyway.
func authParams(first, value string, d *Denial, withScope bool) string {
	var b strings.Builder
	param := func(name, v string) {
		b.WriteString(name)
		b.WriteByte('=')
		quotedString(&b, v)
	}
	param(first, value)
	if e := d.OAuthError(); e != "" {
		param(", error", e)
		if d.Description != "" {
			param(", error_description", d.Description)
		}
	}
	if withScope && d.Scope != "" {
		param(", scope", d.Scope)
	}
	if d.ACRValues != "" {
		param(", acr_values", d.ACRValues)
	}
	if d.MaxAge != "" {
		param(", max_age", d.MaxAge)
	}
	if d.ResourceMetadata != "" {
		param(", resource_metadata", d.ResourceMetadata)
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
	h := HeaderOption(name, value)
	h.AppendAction = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
	return h
}

// HeaderOption sets a header, replacing any of the same name.
func HeaderOption(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
