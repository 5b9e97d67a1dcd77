package contract

import (
	"errors"
	"strings"
)

// RouteExt is a request's route contract as authz reads it: its context extensions (or those
// of the route authz matched itself, in mesh mode), parsed once per Check by Parse. It keeps
// the values as the strings they came as, so parsing allocates nothing; ScopeList splits.
type RouteExt struct {
	// Raw is every extension as it came: input.route carries them all, known or not. Read,
	// never changed.
	Raw map[string]string
	// Name is the route's name; Named says the extensions name one at all.
	Name  string
	Named bool
	// Scopes are the required scopes, space-separated as they came.
	Scopes string
	// Mode is the mode as it came; Shadow: it is ModeShadow (any other mode is enforced).
	Mode   string
	Shadow bool
	// BindingRequired: the route accepts only sender-constrained tokens.
	BindingRequired bool
	// ACRValues (space-separated) and MaxAge (decimal seconds) are the step-up requirement
	// as it came ("" for none), MaxAgeSeconds its value. ACRValues is only known not to be
	// empty: ValidACRValues is for the caller to check when it matters (a token whose acr is
	// in the list needs no more than the lookup).
	ACRValues, MaxAge string
	MaxAgeSeconds     int64
	// MetadataURL is the RFC 9728 metadata document URL for challenges: "" when absent,
	// or when not a plain http(s) URL fit for a quoted string (so a bad label can never break
	// the header).
	MetadataURL string
	// decisionOnly: the extensions hold nothing beyond route, scopes, mode, acr_values and
	// max_age.
	decisionOnly bool
}

// ErrInvalidRoute is Parse's refusal of extensions holding a requirement authz can't read
// (an empty acr_values, a max_age that is no whole number of seconds): such a route is
// refused (500 invalid_route), never allowed. Only a control plane other than ours sends one.
var ErrInvalidRoute = errors.New("the route's step-up requirements are not what authz accepts")

// MaxMetadataURL bounds the resource_metadata URL a route may name.
const MaxMetadataURL = 1024

// Parse reads context extensions into a RouteExt; on ErrInvalidRoute the RouteExt still holds
// everything else. It does not allocate: it runs on every Check.
func Parse(ext map[string]string) (RouteExt, error) {
	r := RouteExt{Raw: ext}
	known := 0
	r.Name, r.Named = ext[ExtRoute]
	r.Scopes = ext[ExtScopes]
	mode, hasMode := ext[ExtMode]
	r.Mode, r.Shadow = mode, mode == ModeShadow
	r.BindingRequired = ext[ExtBinding] == BindingRequired
	r.MetadataURL = metadataURL(ext[ExtResourceMetadata])
	var err error
	acr, hasACR := ext[ExtACRValues]
	if hasACR {
		if acr == "" {
			err = ErrInvalidRoute
		}
		r.ACRValues = acr
	}
	maxAge, hasMaxAge := ext[ExtMaxAge]
	if hasMaxAge {
		n, ok := ParseMaxAge(maxAge)
		if !ok {
			err = ErrInvalidRoute
		} else {
			r.MaxAge, r.MaxAgeSeconds = maxAge, n
		}
	}
	if _, has := ext[ExtScopes]; has {
		known++
	}
	for _, has := range [...]bool{r.Named, hasMode, hasACR, hasMaxAge} {
		if has {
			known++
		}
	}
	r.decisionOnly = known == len(ext)
	return r, err
}

// ScopeList is the route's required scopes, one a string.
func (r *RouteExt) ScopeList() []string { return strings.Fields(r.Scopes) }

// StepUp says whether the route has a step-up requirement (acr_values or max_age).
func (r *RouteExt) StepUp() bool { return r.ACRValues != "" || r.MaxAge != "" }

// DecisionOnly reports whether the extensions hold nothing beyond route, scopes, mode and
// the step-up requirement: a decision that depends only on the token, those and the method
// may be reused for this route.
func (r *RouteExt) DecisionOnly() bool { return r.decisionOnly }

// metadataURL is u when it is a plain http(s) URL fit for a quoted string, else "".
func metadataURL(u string) string {
	if u == "" || len(u) > MaxMetadataURL || !(strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://")) {
		return ""
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return ""
		}
	}
	return u
}
