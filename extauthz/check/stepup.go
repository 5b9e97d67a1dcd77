package check

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/scopegate/scopegate/extauthz/decisionlog"
	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/contract"
)

// Step-up authentication (RFC 9470): a route (acr_values, max_age) or the policy (a step-up
// decision) can require more of the sign-in behind a valid token than the token shows. The
// answer is 401 insufficient_user_authentication with the requirements in the challenge of
// the scheme the client used, so the client knows what to ask its authorization server for.
//
// Order: the token and its binding first (a step-up is only asked of a genuine token), then
// the policy (scopes and rules), then the route's requirements. A client is asked to step up
// only when stepping up would let the request through: a user whose token lacks a scope is
// told so (403) rather than sent through a second factor to be refused anyway.

// requirement is a route's demand on the sign-in: acr values (space-separated, "" for none)
// and a max_age in seconds (maxAge is the route's string form, "" for none).
type requirement struct {
	acrValues string
	maxAge    string
	seconds   int64
}

func (r *requirement) any() bool { return r.acrValues != "" || r.maxAge != "" }

// requirementOf is the route's step-up requirement (contract.Parse read it).
func requirementOf(c *contract.RouteExt) requirement {
	return requirement{acrValues: c.ACRValues, maxAge: c.MaxAge, seconds: c.MaxAgeSeconds}
}

// What of a requirement a token fails.
const (
	unmetACR uint8 = 1 << iota
	unmetAge
)

// unmet says what of r the token fails at now: its acr is not one of acr_values (a token
// without acr fails), or its auth_time is older than max_age plus the issuer's leeway, or
// later than now plus the leeway (a sign-in from the future can't vouch for freshness), or
// absent. invalid is set when acr_values is not a list authz accepts (the route is refused).
func (r *requirement) unmet(id *token.Identity, now time.Time) (u uint8, invalid bool) {
	// The list is checked only when the token's acr is not in it: a request that meets it
	// needs no more than the lookup, and a list authz would not write into a challenge (a
	// foreign control plane's) refuses every other token with 500. A token meets such a list
	// only by naming one of its space-separated values exactly.
	if r.acrValues != "" && !contract.HasACR(r.acrValues, id.ACR) {
		if !contract.ValidACRValues(r.acrValues) {
			return 0, true
		}
		u |= unmetACR
	}
	if r.maxAge != "" {
		switch age := now.Sub(id.AuthTime); {
		case id.AuthTime.IsZero(), age > time.Duration(r.seconds)*time.Second+id.Leeway, age < -id.Leeway:
			u |= unmetAge
		}
	}
	return u, false
}

// record is what the decision log keeps of r (the token's side is the record's identity).
func (r *requirement) record(now time.Time) decisionlog.StepUp {
	s := decisionlog.StepUp{Applied: true, ACRValues: r.acrValues, MaxAge: -1, Now: now}
	if r.maxAge != "" {
		s.MaxAge = r.seconds
	}
	return s
}

// stepUpDescriptions are the error_description of each failure: fixed strings, so a route's
// step-up denial is cached like any other.
var stepUpDescriptions = [...]string{
	unmetACR:            "a stronger authentication is required",
	unmetAge:            "a more recent authentication is required",
	unmetACR | unmetAge: "a stronger and more recent authentication is required",
}

// checkRoute applies the route's step-up requirement to a request the policy allowed (or that
// needs no policy); nil means go on. Route shadow mode (and policy.shadow) let a failure
// through, logged and counted, as they do the policy's denials: a requirement can be tried on
// live traffic before it is enforced.
func (s *Service) checkRoute(v *policy.View, rec *decisionlog.Record, id *token.Identity, pt *perToken, r *requirement, dpopScheme bool) *authv3.CheckResponse {
	if !r.any() {
		return nil
	}
	now := s.now(rec)
	rec.StepUp = r.record(now)
	u, invalid := r.unmet(id, now)
	if invalid {
		rec.StepUp = decisionlog.StepUp{}
		return s.invalidRoute(v, rec)
	}
	if u == 0 {
		return nil
	}
	rec.Detail = rec.StepUp.Detail(id)
	if s.o.Shadow || v.Route.Shadow {
		return s.shadowAllow(rec, id, pt, 401, contract.ReasonInsufficientUserAuthentication)
	}
	d := challenged(denial.New(denial.InsufficientUserAuthentication, contract.ReasonInsufficientUserAuthentication, stepUpDescriptions[u]),
		dpopScheme, v.Route.MetadataURL)
	d.ACRValues, d.MaxAge = r.acrValues, r.maxAge
	return s.deny(rec, d)
}

// policyStepUp is the answer to a policy's step-up decision (RFC 9470): 401 with the
// decision's acr_values and max_age in the challenge. Policy values vary with the request, so
// the denial is built each time, not cached.
func (s *Service) policyStepUp(v *policy.View, rec *decisionlog.Record, id *token.Identity, dec *policy.Decision, dpopScheme bool) *authv3.CheckResponse {
	r := requirement{acrValues: strings.Join(dec.ACRValues, " ")}
	if dec.MaxAge != nil {
		r.seconds = *dec.MaxAge
		r.maxAge = strconv.FormatInt(r.seconds, 10)
	}
	rec.StepUp = r.record(s.now(rec))
	rec.Detail = "the policy asked for step-up: " + rec.StepUp.Detail(id)
	d := challenged(denial.New(denial.InsufficientUserAuthentication, contract.ReasonInsufficientUserAuthentication,
		"the request needs a stronger or more recent authentication"), dpopScheme, v.Route.MetadataURL)
	d.ACRValues, d.MaxAge, d.Headers = r.acrValues, r.maxAge, denialHeaders(dec.ResponseHeaders)
	return s.denyNow(rec, d)
}

// invalidRoute refuses a request on a route whose requirements authz can't read (only a
// control plane other than ours can send one): 500, logged, never an allow.
func (s *Service) invalidRoute(v *policy.View, rec *decisionlog.Record) *authv3.CheckResponse {
	ext := v.Route.Raw // as it came: what was refused
	s.o.Logger.Error("the route's step-up requirements are invalid; denying", "route", v.Route.Name,
		contract.ExtACRValues, ext[contract.ExtACRValues], contract.ExtMaxAge, ext[contract.ExtMaxAge])
	return s.deny(rec, errInvalidRoute)
}

var errInvalidRoute = denial.New(denial.ServerError, contract.ReasonInvalidRoute, "the route's authentication requirements are invalid")

// now is the time step-up requirements are checked at: the Check's start, or Options.Now.
func (s *Service) now(rec *decisionlog.Record) time.Time {
	if s.o.Now != nil {
		return s.o.Now()
	}
	return rec.Time
}

// StepUpReport is, for `scopegate check`, the step-up requirement of the route whose context
// extensions are ext against id's sign-in at now: what is required, what the token has (in
// su) and whether it is met. su is nil when the route requires nothing; err when ext holds a
// requirement authz refuses to read.
func StepUpReport(ext map[string]string, id *token.Identity, now time.Time) (su *decisionlog.StepUp, met bool, err error) {
	c, err := contract.Parse(ext)
	if err != nil {
		return nil, false, fmt.Errorf("the route's %s %q / %s %q is not what authz accepts (refused with 500 %s)",
			contract.ExtACRValues, ext[contract.ExtACRValues], contract.ExtMaxAge, ext[contract.ExtMaxAge], contract.ReasonInvalidRoute)
	}
	r := requirementOf(&c)
	if !r.any() {
		return nil, true, nil
	}
	rec := r.record(now)
	u, invalid := r.unmet(id, now)
	if invalid {
		return nil, false, fmt.Errorf("the route's %s %q is not what authz accepts (refused with 500 %s)", contract.ExtACRValues, r.acrValues, contract.ReasonInvalidRoute)
	}
	return &rec, u == 0, nil
}
