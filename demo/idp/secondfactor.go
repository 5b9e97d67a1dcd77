package idp

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Authentication context classes and methods the demo provider reaches (RFC 9470 step-up): a
// password alone, or a password and the demo one-time code. Tokens of a user carry the one
// reached as acr, the methods as amr (RFC 8176) and the moment of the last factor as
// auth_time.
const (
	ACRPassword = "urn:scopegate:demo:password"
	ACRMFA      = "urn:scopegate:demo:mfa"

	AMRPassword = "pwd"
	AMROTP      = "otp"
	AMRMFA      = "mfa"
)

// ACRValuesSupported are the acr values the provider can reach, weakest first.
func ACRValuesSupported() []string { return []string{ACRPassword, ACRMFA} }

// PathSecondFactor receives the second-factor form.
const PathSecondFactor = "/login/second-factor"

// maxSecondFactorTries bounds wrong codes per authorization request: after that, the request
// is dropped and the user starts over (a 6-digit code can't be guessed in a few tries).
const maxSecondFactorTries = 5

// authn is the user's authentication behind a grant, as access tokens and introspection
// answers state it.
type authn struct {
	acr      string
	amr      []string
	authTime time.Time
}

// authnOf is g's user authentication; a client credentials grant has none.
func authnOf(g grant) authn {
	switch v := g.(type) {
	case *authRequest:
		return authn{acr: v.acr, amr: v.GetAMR(), authTime: v.authTime}
	case *refreshRequest:
		// A refresh keeps the authentication of the grant's sign-in (OpenID Connect Core
		// §12.2): stepping up needs a new sign-in.
		return authn{acr: v.rec.acr, amr: slices.Clone(v.rec.amr), authTime: v.rec.authTime}
	}
	return authn{}
}

// wantsSecondFactor reports whether the request asks for the stronger class. The provider
// honours acr_values for the classes it knows; one it doesn't know is not reached (OpenID
// Connect treats acr_values as voluntary: the token's acr says what was reached, and the
// resource server decides). The provider keeps no session, so every authorization request
// signs in afresh: max_age is always met, with auth_time the moment of the last factor.
func (a *authRequest) wantsSecondFactor() bool { return slices.Contains(a.acrValues, ACRMFA) }

var errNoSecondFactor = errors.New("the user has no second factor, and the client asked for a sign-in with one")

// errUnmetAuthenticationRequirements is OpenID Connect's error for an authentication the
// provider could not perform as requested.
const errUnmetAuthenticationRequirements = "unmet_authentication_requirements"

// secondFactor shows the second-factor step after a correct password, when the request asks
// for it; it reports whether it answered (the caller then stops). A user with no second factor
// goes back to the client with unmet_authentication_requirements (the OpenID Connect error
// RFC 9470 §4 points to), so the client learns at once instead of waiting.
func (l *loginUI) secondFactor(w http.ResponseWriter, r *http.Request, a *authRequest, u User) bool {
	if !a.wantsSecondFactor() {
		return false
	}
	if u.SecondFactor == "" {
		l.log.Info("second factor asked, none enrolled", "username", u.Username, "client_id", a.clientID)
		_ = l.store.DeleteAuthRequest(r.Context(), a.id)
		op.AuthRequestError(w, r, a, &oidc.Error{ErrorType: errUnmetAuthenticationRequirements, Description: errNoSecondFactor.Error()}, l.authorizer)
		return true
	}
	l.render(w, http.StatusOK, "second-factor", l.secondFactorData(a, u.Username, ""))
	return true
}

func (l *loginUI) secondFactorData(a *authRequest, username, errMsg string) pageData {
	d := l.page("Second factor")
	d.ID, d.CSRF, d.ClientID, d.Username, d.Error = a.id, a.csrf, a.clientID, username, errMsg
	return d
}

// submitSecondFactor checks the one-time code of the user who signed in on this request; a
// right one raises the request to ACRMFA and goes on to consent.
func (l *loginUI) submitSecondFactor(w http.ResponseWriter, r *http.Request) {
	a, ok := l.formRequest(w, r)
	if !ok {
		return
	}
	u, known := l.store.users[a.subject]
	if a.subject == "" || !known || !a.wantsSecondFactor() || u.SecondFactor == "" {
		l.fail(w, http.StatusForbidden, "Sign in with your password first.")
		return
	}
	if !equalSecret(r.PostForm.Get("code"), u.SecondFactor) {
		l.metrics.logins.WithLabelValues("second_factor_failure").Inc()
		tries, err := l.store.secondFactorFailed(a.id)
		l.log.Info("second factor refused", "username", u.Username, "client_id", a.clientID, "tries", tries)
		if err != nil {
			op.AuthRequestError(w, r, a, oidc.ErrAccessDenied().WithDescription("too many wrong second-factor codes"), l.authorizer)
			return
		}
		l.render(w, http.StatusUnauthorized, "second-factor", l.secondFactorData(a, u.Username, "That code is not right."))
		return
	}
	if err := l.store.setSecondFactor(a.id, u.Username); err != nil {
		l.fail(w, http.StatusConflict, err.Error())
		return
	}
	l.metrics.logins.WithLabelValues("second_factor_success").Inc()
	l.log.Info("second factor", "username", u.Username, "client_id", a.clientID)
	a, err := l.store.authRequest(a.id)
	if err != nil {
		l.fail(w, http.StatusBadRequest, "This sign-in request is unknown or has expired.")
		return
	}
	l.showConsent(w, a, u)
}

// setSecondFactor records a right code: the request reaches ACRMFA, its auth_time is now.
func (s *storage) setSecondFactor(id, subject string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.liveAuthRequestLocked(id)
	if err != nil {
		return err
	}
	if a.subject != subject || a.done {
		return errors.New("this authorization request is not waiting for a second factor")
	}
	a.acr, a.amr, a.authTime = ACRMFA, []string{AMRPassword, AMROTP, AMRMFA}, s.now()
	return nil
}

var errTooManyTries = errors.New("too many wrong second-factor codes")

// secondFactorFailed counts a wrong code; past maxSecondFactorTries the request is dropped.
func (s *storage) secondFactorFailed(id string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.liveAuthRequestLocked(id)
	if err != nil {
		return 0, err
	}
	a.secondFactorTries++
	if a.secondFactorTries >= maxSecondFactorTries {
		delete(s.authRequests, id)
		return a.secondFactorTries, errTooManyTries
	}
	return a.secondFactorTries, nil
}
