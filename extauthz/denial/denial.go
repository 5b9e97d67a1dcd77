// Package denial is the one shape of every refusal authz makes. A Denial says why (a reason
// from internal/contract), what kind of refusal it is (its Kind: the HTTP status, gRPC code,
// OAuth error and challenge it gets, from one table) and what the challenge carries. bearer,
// token, dpop and policy return one as their error; Response turns it into Envoy's answer.
package denial

import (
	"time"

	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/internal/contract"
)

// Kind is the class of a refusal: it fixes the HTTP status (unless the Denial sets its
// own), the gRPC code, the OAuth error code and whether a WWW-Authenticate challenge goes out.
type Kind uint8

// Kinds of refusal. The zero Kind is ServerError: a Denial nobody classified fails closed.
const (
	// ServerError: 500 (or the Denial's Status, policy.error_status) server_error, no
	// challenge: authz could not decide (a policy failure, a route it can't read).
	ServerError Kind = iota
	// Unauthorized: 401 with a bare challenge: the request carries no credentials (RFC 6750 §3.1).
	Unauthorized
	// InvalidRequest: 400 invalid_request, challenged: credentials sent the wrong way.
	InvalidRequest
	// NotHTTP: 400 invalid_request, no challenge: the Check carries no HTTP request at all.
	NotHTTP
	// InvalidToken: 401 invalid_token (RFC 6750 §3.1).
	InvalidToken
	// InvalidDPoPProof: 401 invalid_dpop_proof, in the DPoP challenge (RFC 9449 §7.1).
	InvalidDPoPProof
	// UseDPoPNonce: 401 use_dpop_nonce, in the DPoP challenge, with a DPoP-Nonce (RFC 9449 §9).
	UseDPoPNonce
	// InsufficientUserAuthentication: 401 insufficient_user_authentication with what to ask
	// for (RFC 9470 §3).
	InsufficientUserAuthentication
	// InsufficientScope: 403 insufficient_scope naming the scopes required (RFC 6750 §3.1).
	InsufficientScope
	// AccessDenied: 403 (or the policy's own status) access_denied, no challenge.
	AccessDenied
	// Unavailable: 503 temporarily_unavailable with Retry-After: our side can't decide now.
	Unavailable
	// TooManyRequests: 429 temporarily_unavailable with Retry-After: this client's share of
	// something is used up for now.
	TooManyRequests
)

// class is what a Kind means on the wire.
type class struct {
	status     int
	code       codes.Code // 0 (OK) for AccessDenied: from the status
	oauthError string     // "" for a bare challenge
	challenge  bool
	dpop       bool // always the DPoP scheme's error
	retryAfter time.Duration
}

// classes is the table: every Kind's status, gRPC code, OAuth error and challenge.
var classes = [...]class{
	ServerError:                    {status: 500, code: codes.Internal, oauthError: "server_error"},
	Unauthorized:                   {status: 401, code: codes.Unauthenticated, challenge: true},
	InvalidRequest:                 {status: 400, code: codes.InvalidArgument, oauthError: "invalid_request", challenge: true},
	NotHTTP:                        {status: 400, code: codes.InvalidArgument, oauthError: "invalid_request"},
	InvalidToken:                   {status: 401, code: codes.Unauthenticated, oauthError: "invalid_token", challenge: true},
	InvalidDPoPProof:               {status: 401, code: codes.Unauthenticated, oauthError: "invalid_dpop_proof", challenge: true, dpop: true},
	UseDPoPNonce:                   {status: 401, code: codes.Unauthenticated, oauthError: "use_dpop_nonce", challenge: true, dpop: true},
	InsufficientUserAuthentication: {status: 401, code: codes.Unauthenticated, oauthError: "insufficient_user_authentication", challenge: true},
	InsufficientScope:              {status: 403, code: codes.PermissionDenied, oauthError: "insufficient_scope", challenge: true},
	AccessDenied:                   {status: 403, oauthError: "access_denied"},
	Unavailable:                    {status: 503, code: codes.Unavailable, oauthError: "temporarily_unavailable", retryAfter: 5 * time.Second},
	TooManyRequests:                {status: 429, code: codes.ResourceExhausted, oauthError: "temporarily_unavailable"},
}

// Denial is one refusal: why, what kind, and what the client is told. Everything sent is
// fixed text or a value checked where it came in (config, route contract, policy decision);
// nothing echoes a token or a proof.
type Denial struct {
	// Reason is the fixed label of the refusal (metrics, decision log): a contract reason,
	// or a policy's own.
	Reason contract.Reason
	Kind   Kind
	// Status replaces the Kind's HTTP status when set (a policy's status, policy.error_status).
	Status int
	// Description is the error_description: short and fixed.
	Description string
	// Detail is for operators only (decision log, `scopegate check`), never sent: what the
	// token says against what the config expects.
	Detail string
	// DPoP puts the error in the DPoP challenge: the client used the DPoP scheme (RFC 9449
	// §7.1). The Bearer challenge then goes bare.
	DPoP bool
	// Challenge parameters, each sent where set: the scopes required (Bearer only), the
	// step-up requirements (RFC 9470 §3) and the RFC 9728 metadata URL (§5.1).
	Scope, ACRValues, MaxAge, ResourceMetadata string
	// Nonce is a fresh DPoP-Nonce the client must retry with (UseDPoPNonce).
	Nonce string
	// RetryAfter replaces the Kind's Retry-After when set.
	RetryAfter time.Duration
	// Headers are added to the response as they are (a policy's response headers).
	Headers []Header
	// Err is the cause, for logs only.
	Err error
}

// Header is a response header a Denial adds.
type Header struct{ Name, Value string }

// New is a Denial of kind for reason, with the client's description.
func New(kind Kind, reason contract.Reason, description string) *Denial {
	return &Denial{Kind: kind, Reason: reason, Description: description}
}

func (d *Denial) Error() string {
	s := d.Reason + ": " + d.Description
	if d.Detail != "" {
		s += " (" + d.Detail + ")"
	}
	if d.Err != nil {
		s += ": " + d.Err.Error()
	}
	return s
}

func (d *Denial) Unwrap() error { return d.Err }

// HTTPStatus is the status the client gets.
func (d *Denial) HTTPStatus() int {
	if d.Status != 0 {
		return d.Status
	}
	return d.class().status
}

// OAuthError is the error code of the body and the challenge ("" for a bare challenge).
func (d *Denial) OAuthError() string { return d.class().oauthError }

// WithDetail is a copy of d with detail (d may be a shared sentinel).
func (d *Denial) WithDetail(detail string) *Denial {
	c := *d
	c.Detail = detail
	return &c
}

func (d *Denial) class() *class {
	if int(d.Kind) < len(classes) {
		return &classes[d.Kind]
	}
	return &classes[ServerError]
}

// grpcCode is the Check's gRPC status code.
func (d *Denial) grpcCode() codes.Code {
	if c := d.class().code; c != codes.OK {
		return c
	}
	switch s := d.HTTPStatus(); {
	case s == 401:
		return codes.Unauthenticated
	case s == 403:
		return codes.PermissionDenied
	case s == 429:
		return codes.ResourceExhausted
	case s >= 500:
		return codes.Unavailable
	case s >= 400:
		return codes.InvalidArgument
	}
	return codes.PermissionDenied
}
