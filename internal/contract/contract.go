// Package contract is what the control plane and the authz service must agree on: the
// ext_authz context_extensions the control plane writes on each route and authz reads, the
// route modes, the default identity header names, and the deny reasons authz reports (metric
// labels, decision log values and documented behaviour). Neither half spells these strings
// itself.
package contract

import "strings"

// Context extension keys: ExtAuthzPerRoute.check_settings.context_extensions on a protected
// route, input.route in the policy.
const (
	// ExtRoute is the route's name (input.route.name).
	ExtRoute = "route"
	// ExtScopes are the route's required scopes, space-separated (input.route.scopes).
	ExtScopes = "scopes"
	// ExtMode is the route's mode, ModeEnforce or ModeShadow (input.route.mode).
	ExtMode = "mode"
	// ExtBinding is BindingRequired on a route that accepts only sender-constrained tokens
	// (input.route.binding).
	ExtBinding = "binding"
	// ExtResourceMetadata is the URL of the virtual host's RFC 9728 protected resource
	// metadata document; authz names it in every challenge (RFC 9728 §5.1). Absent when the
	// virtual host publishes none.
	ExtResourceMetadata = "resource_metadata"
)

// BindingRequired is the value of ExtBinding on a route that refuses plain bearer tokens.
const BindingRequired = "required"

// Route modes (the value of ExtMode).
const (
	// ModeEnforce denies what the policy denies; a route without ExtMode is enforced.
	ModeEnforce = "enforce"
	// ModeShadow lets the policy's denials through, logging and counting them; token
	// failures (400, 401, 503) are still denied.
	ModeShadow = "shadow"
)

// DPoPAlgorithms are the DPoP proof algorithms authz accepts by default (dpop_algorithms),
// which the control plane advertises in RFC 9728 metadata unless told otherwise.
func DPoPAlgorithms() []string { return []string{"ES256", "EdDSA", "RS256", "PS256"} }

// Default identity headers authz sets on allowed requests and the control plane strips from
// incoming ones.
const (
	HeaderSubject  = "x-scopegate-subject"
	HeaderClientID = "x-scopegate-client-id"
	HeaderScopes   = "x-scopegate-scopes"
	HeaderIssuer   = "x-scopegate-issuer"
)

// IdentityHeaders are the default identity header names, in a fixed order.
func IdentityHeaders() []string {
	return []string{HeaderSubject, HeaderClientID, HeaderScopes, HeaderIssuer}
}

// Reason is why a Check was denied (or, in shadow mode, would have been): a fixed label,
// safe as a metric label value, documented in README.md.
type Reason = string

// Request and credential reasons (400 or 401 without a token error).
const (
	ReasonMissingToken   Reason = "missing_token"
	ReasonInvalidRequest Reason = "invalid_request"
	ReasonTokenTooLarge  Reason = "token_too_large"
)

// Token reasons (401 invalid_token, or 503 for ReasonNoKeys).
const (
	ReasonMalformed        Reason = "malformed"
	ReasonUnsupportedToken Reason = "unsupported_token"
	ReasonUnknownIssuer    Reason = "unknown_issuer"
	ReasonAlgNotAllowed    Reason = "alg_not_allowed"
	ReasonKeyMismatch      Reason = "key_mismatch"
	ReasonBadSignature     Reason = "bad_signature"
	ReasonUnknownKID       Reason = "unknown_kid"
	ReasonUnsupportedCrit  Reason = "unsupported_crit"
	ReasonWrongTyp         Reason = "wrong_typ"
	ReasonMissingExp       Reason = "missing_exp"
	ReasonMissingClaim     Reason = "missing_claim"
	ReasonExpired          Reason = "expired"
	ReasonNotYetValid      Reason = "not_yet_valid"
	ReasonIssuedInFuture   Reason = "issued_in_future"
	ReasonWrongAudience    Reason = "wrong_audience"
	ReasonInvalidClaims    Reason = "invalid_claims"
	ReasonInvalidToken     Reason = "invalid_token"
	// ReasonNoKeys: the issuer's keys were never fetched (503).
	ReasonNoKeys Reason = "no_keys"
	// ReasonKeyRefreshPending: an unknown kid's key refresh did not finish within the Check's
	// deadline budget (503).
	ReasonKeyRefreshPending Reason = "key_refresh_pending"
)

// Sender-constraint reasons (401 invalid_token; a bad DPoP proof is invalid_dpop_proof,
// use_dpop_nonce, dpop_replayed or dpop_key_mismatch, named in extauthz/dpop).
const (
	ReasonNotDPoPBound        Reason = "not_dpop_bound"
	ReasonDPoPDowngrade       Reason = "dpop_downgrade"
	ReasonCertificateMismatch Reason = "certificate_mismatch"
	ReasonBindingRequired     Reason = "binding_required"
)

// Introspection reasons (opaque tokens, RFC 7662): 401 invalid_token, or 503 for
// ReasonIntrospectionUnavailable. The token reasons above (expired, wrong_audience,
// unknown_issuer, wrong_typ, missing_exp, not_yet_valid) apply to an introspection answer too.
const (
	// ReasonInactive: the issuer answered active: false.
	ReasonInactive Reason = "inactive"
	// ReasonIntrospectionUnavailable: no answer in time and no cached one to fall back on (503).
	ReasonIntrospectionUnavailable Reason = "introspection_unavailable"
	// ReasonIntrospectionOverloaded: the issuer already had introspection.max_concurrent calls
	// in flight, so a new token was not sent (503, answered at once).
	ReasonIntrospectionOverloaded Reason = "introspection_overloaded"
)

// Service-side reasons.
const (
	// ReasonNoPolicy: the policy comes from a bundle server and no good bundle has arrived
	// yet (503, denied in shadow mode too: there is nothing to shadow).
	ReasonNoPolicy Reason = "no_policy"
	// ReasonInternalError: verification failed in a way scopegate did not expect (503).
	ReasonInternalError Reason = "internal_error"
	// ReasonPolicyDenied: the policy denied without naming a reason of its own.
	ReasonPolicyDenied Reason = "policy_denied"
	// ReasonPolicyErrorPrefix prefixes the policy error class (policy_undefined,
	// policy_conflict, policy_timeout, policy_malformed, policy_multiple, policy_eval_error).
	ReasonPolicyErrorPrefix = "policy_"
	// ReasonNoRoute: mesh mode with unmatched: deny; the request carries no route context
	// extensions and matches no route of authz's route table (403).
	ReasonNoRoute Reason = "no_route"
)

// Reasons are every fixed reason above: metric label values always admitted as they are
// (a policy's own reasons share a bounded set of label values, see extauthz/check).
func Reasons() []Reason {
	return []Reason{ReasonMissingToken, ReasonInvalidRequest, ReasonTokenTooLarge,
		ReasonMalformed, ReasonUnsupportedToken, ReasonUnknownIssuer, ReasonAlgNotAllowed, ReasonKeyMismatch,
		ReasonBadSignature, ReasonUnknownKID, ReasonUnsupportedCrit, ReasonWrongTyp, ReasonMissingExp,
		ReasonMissingClaim, ReasonExpired, ReasonNotYetValid, ReasonIssuedInFuture, ReasonWrongAudience,
		ReasonInvalidClaims, ReasonInvalidToken, ReasonNoKeys, ReasonKeyRefreshPending,
		ReasonNotDPoPBound, ReasonDPoPDowngrade, ReasonCertificateMismatch, ReasonBindingRequired,
		ReasonInactive, ReasonIntrospectionUnavailable, ReasonIntrospectionOverloaded,
		ReasonNoPolicy, ReasonInternalError, ReasonPolicyDenied, ReasonNoRoute}
}

// Route is the route contract a protected route carries to authz: what the control plane
// writes as ext_authz context extensions and what authz's own route table yields for a
// request it matches (mesh mode). Both build it the same way (controlplane/config's
// VirtualHost.RouteExtensions), so the two halves agree by construction.
type Route struct {
	Name   string
	Scopes []string
	// Mode is ModeEnforce or ModeShadow; enforce is the default and is not written.
	Mode string
	// Binding is BindingRequired or empty.
	Binding string
	// ResourceMetadata is the RFC 9728 metadata document URL, or empty.
	ResourceMetadata string
}

// Extensions encodes the route as context extensions: route and scopes always (scopes
// space-separated), mode only for shadow, binding and resource_metadata only when set.
func (r Route) Extensions() map[string]string {
	ext := map[string]string{ExtRoute: r.Name, ExtScopes: strings.Join(r.Scopes, " ")}
	if r.Mode == ModeShadow {
		ext[ExtMode] = ModeShadow
	}
	if r.Binding == BindingRequired {
		ext[ExtBinding] = BindingRequired
	}
	if r.ResourceMetadata != "" {
		ext[ExtResourceMetadata] = r.ResourceMetadata
	}
	return ext
}
