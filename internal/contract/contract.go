// Package contract is what the control plane and the authz service must agree on: the
// ext_authz context_extensions the control plane writes on each route and authz reads, the
// route modes, the default identity header names, and the deny reasons authz reports (metric
// labels, decision log values and documented behaviour). Neither half spells these strings
// itself.
package contract

import (
	"strconv"
	"strings"
	"time"
)

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
	// ExtACRValues are the authentication context classes the route accepts, space-separated
	// (RFC 9470): the token's acr must be one of them (input.route.acr_values, a list).
	ExtACRValues = "acr_values"
	// ExtMaxAge is the most seconds since the user's authentication the route accepts, a
	// decimal integer (RFC 9470 max_age): the token's auth_time must be that recent, give or
	// take the issuer's leeway (input.route.max_age, a number).
	ExtMaxAge = "max_age"
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

// Sender-constraint reasons (401 invalid_token).
const (
	ReasonNotDPoPBound        Reason = "not_dpop_bound"
	ReasonDPoPDowngrade       Reason = "dpop_downgrade"
	ReasonCertificateMismatch Reason = "certificate_mismatch"
	ReasonBindingRequired     Reason = "binding_required"
)

// DPoP proof reasons (RFC 9449): 401 invalid_dpop_proof or use_dpop_nonce, 429 or 503 when
// the replay caches can't take the proof.
const (
	// ReasonInvalidDPoPProof: no proof, or one that fails a check of its own (shape, key,
	// signature, htm, htu, iat, ath).
	ReasonInvalidDPoPProof Reason = "invalid_dpop_proof"
	// ReasonUseDPoPNonce: the proof lacks a current server nonce; the answer carries one.
	ReasonUseDPoPNonce Reason = "use_dpop_nonce"
	// ReasonDPoPReplayed: the proof was used before (on this replica, or any with a shared store).
	ReasonDPoPReplayed Reason = "dpop_replayed"
	// ReasonDPoPKeyMismatch: the proof is signed with another key than the token's cnf.jkt.
	ReasonDPoPKeyMismatch Reason = "dpop_key_mismatch"
	// ReasonDPoPReplayCacheFull: the local replay cache is full of live proofs (503).
	ReasonDPoPReplayCacheFull Reason = "dpop_replay_cache_full"
	// ReasonDPoPKeyQuota: this proof key used up its share of the replay cache (429).
	ReasonDPoPKeyQuota Reason = "dpop_key_quota"
	// ReasonReplayStoreUnavailable: the shared replay store could not record the proof
	// before the deadline (503; fail closed).
	ReasonReplayStoreUnavailable Reason = "replay_store_unavailable"
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

// Step-up reasons (RFC 9470).
const (
	// ReasonInsufficientUserAuthentication: the token is valid, but the sign-in behind it is not
	// strong or recent enough for the route (acr_values, max_age) or for the policy (a step-up
	// decision): 401 with error="insufficient_user_authentication" and what to ask for.
	ReasonInsufficientUserAuthentication Reason = "insufficient_user_authentication"
	// ReasonInvalidRoute: the route's context extensions hold a requirement authz can't read
	// (a max_age that is no whole number of seconds, an acr value with a forbidden character):
	// 500, never an allow; only a control plane other than ours can send one.
	ReasonInvalidRoute Reason = "invalid_route"
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
		ReasonInvalidDPoPProof, ReasonUseDPoPNonce, ReasonDPoPReplayed, ReasonDPoPKeyMismatch,
		ReasonDPoPReplayCacheFull, ReasonDPoPKeyQuota, ReasonReplayStoreUnavailable,
		ReasonInactive, ReasonIntrospectionUnavailable, ReasonIntrospectionOverloaded,
		ReasonInsufficientUserAuthentication, ReasonInvalidRoute, ReasonNoPolicy, ReasonInternalError, ReasonPolicyDenied, ReasonNoRoute}
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
	// ACRValues and MaxAge are the route's RFC 9470 step-up requirements: the token's acr
	// must be one of ACRValues, its auth_time no older than MaxAge (none when empty or 0).
	ACRValues []string
	MaxAge    time.Duration
	// MetadataURL is the RFC 9728 metadata document URL, or empty.
	MetadataURL string
}

// Encode writes the route as context extensions: route and scopes always (scopes
// space-separated), mode only for shadow, binding, acr_values (space-separated), max_age
// (whole seconds) and resource_metadata only when set.
func (r Route) Encode() map[string]string {
	ext := map[string]string{ExtRoute: r.Name, ExtScopes: strings.Join(r.Scopes, " ")}
	if r.Mode == ModeShadow {
		ext[ExtMode] = ModeShadow
	}
	if r.Binding == BindingRequired {
		ext[ExtBinding] = BindingRequired
	}
	if len(r.ACRValues) > 0 {
		ext[ExtACRValues] = strings.Join(r.ACRValues, " ")
	}
	if r.MaxAge > 0 {
		ext[ExtMaxAge] = FormatMaxAge(r.MaxAge)
	}
	if r.MetadataURL != "" {
		ext[ExtResourceMetadata] = r.MetadataURL
	}
	return ext
}

// MaxMaxAge bounds max_age (a year): a larger value is a unit mistake, not a requirement.
const MaxMaxAge = 366 * 24 * 60 * 60

// FormatMaxAge is the ExtMaxAge value of a route's max_age: whole seconds, in decimal. The
// control plane has checked that d is a positive whole number of seconds.
func FormatMaxAge(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }

// ParseMaxAge reads an ExtMaxAge value: a decimal integer of seconds from 0 to MaxMaxAge, no
// sign, no unit. It does not allocate (it runs on every Check of such a route).
func ParseMaxAge(s string) (int64, bool) {
	if s == "" || len(s) > 8 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, n <= MaxMaxAge
}

// ValidACR reports whether s can be an acr value in a route, a challenge or an authorization
// request: RFC 6749's scope-token characters (%x21 / %x23-5B / %x5D-7E), so that the
// space-separated acr_values list and the quoted challenge parameter carry it unchanged (no
// space, quote, backslash or control character can reach a header). At most 256 bytes.
func ValidACR(s string) bool {
	if s == "" || len(s) > maxACR {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !acrChar(s[i]) {
			return false
		}
	}
	return true
}

const maxACR = 256

func acrChar(c byte) bool { return acrChars[c] }

// acrChars marks the bytes an acr value may hold: a table keeps the per-byte test one load.
var acrChars = func() (t [256]bool) {
	for c := 0x21; c <= 0x7e; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// ValidACRValues reports whether s is an ExtACRValues value: one or more ValidACR values
// separated by single spaces, no leading or trailing space. One pass, no allocation: it runs
// on every Check of such a route.
func ValidACRValues(s string) bool {
	n := 0 // length of the current value
	for i := 0; i < len(s); i++ {
		c := s[i]
		if acrChars[c] {
			n++
			continue
		}
		if c != ' ' || n == 0 || n > maxACR {
			return false // a byte no acr holds, or a leading or double space
		}
		n = 0
	}
	return n > 0 && n <= maxACR
}

// HasACR reports whether acr is one of the space-separated values in list (exact, case
// sensitive), whatever else list holds. It does not allocate; strings.Index does the scanning.
func HasACR(list, acr string) bool {
	if acr == "" || strings.IndexByte(acr, ' ') >= 0 {
		return false // one value, never a list
	}
	for {
		i := strings.Index(list, acr)
		if i < 0 {
			return false
		}
		end := i + len(acr)
		if (i == 0 || list[i-1] == ' ') && (end == len(list) || list[end] == ' ') {
			return true
		}
		list = list[i+1:]
	}
}
