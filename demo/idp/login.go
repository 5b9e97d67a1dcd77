package idp

import (
	"crypto/subtle"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

//go:embed templates/*.html
var templateFS embed.FS

var pages = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// maxFormBytes bounds the login and consent form bodies.
const maxFormBytes = 16 << 10

// loginUI is the server-rendered login and consent flow. Each form carries the authorization
// request's CSRF token, which must also come back in a SameSite=Strict cookie set when the
// login page was shown: a form posted from another site, or for another browser's request,
// is refused.
type loginUI struct {
	store        *storage
	log          *slog.Logger
	authorizer   op.Authorizer
	callbackPath string
	issuer       string
	audience     string
	scopeDesc    map[string]string
	metrics      *metrics
}

type scopeView struct{ Name, Description string }

// pageData is what every page may show. The login page lists the requested scopes; the
// consent page offers each grantable one as a checkbox (checked) and lists the refused ones.
// A later step between the two (a second factor, say) renders with the same data.
type pageData struct {
	Title, Warning, Issuer, Audience string
	ID, CSRF, ClientID, Username     string
	Error                            string
	Requested                        []scopeView // login: what the client asks for
	Granted, Refused                 []scopeView // consent: grantable (checkboxes), refused
}

func (l *loginUI) page(title string) pageData {
	return pageData{Title: title, Warning: Warning, Issuer: l.issuer, Audience: l.audience}
}

func (l *loginUI) render(w http.ResponseWriter, status int, name string, data pageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// No form-action: the consent form's redirect chain ends at the client's redirect URI.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		l.log.Error("render page", "page", name, "error", err)
	}
}

func (l *loginUI) fail(w http.ResponseWriter, status int, msg string) {
	d := l.page("Error")
	d.Error = msg
	l.render(w, status, "error", d)
}

func (l *loginUI) home(w http.ResponseWriter, _ *http.Request) {
	l.render(w, http.StatusOK, "home", l.page("Home"))
}

func csrfCookieName(authRequestID string) string {
	return "scopegate_idp_csrf_" + hashToken(authRequestID)[:16]
}

func (l *loginUI) showLogin(w http.ResponseWriter, r *http.Request) {
	a, err := l.store.authRequest(r.URL.Query().Get("authRequestID"))
	if err != nil {
		l.fail(w, http.StatusBadRequest, "This sign-in request is unknown or has expired.")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     csrfCookieName(a.id),
		Value:    a.csrf,
		Path:     "/",
		MaxAge:   int(authRequestLifetime.Seconds()),
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	l.render(w, http.StatusOK, "login", l.loginData(a, "", ""))
}

func (l *loginUI) loginData(a *authRequest, username, errMsg string) pageData {
	d := l.page("Sign in")
	d.ID, d.CSRF, d.ClientID, d.Username, d.Error = a.id, a.csrf, a.clientID, username, errMsg
	d.Requested = l.views(a.requested)
	return d
}

// formRequest parses a posted form and returns its authorization request once the CSRF token
// in the form and in the cookie both match the request's.
func (l *loginUI) formRequest(w http.ResponseWriter, r *http.Request) (*authRequest, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		l.fail(w, http.StatusBadRequest, "The form could not be read.")
		return nil, false
	}
	a, err := l.store.authRequest(r.PostForm.Get("authRequestID"))
	if err != nil {
		l.fail(w, http.StatusBadRequest, "This sign-in request is unknown or has expired.")
		return nil, false
	}
	cookie, err := r.Cookie(csrfCookieName(a.id))
	if err != nil || !equalSecret(cookie.Value, a.csrf) || !equalSecret(r.PostForm.Get("csrf"), a.csrf) {
		l.log.Warn("login form refused: CSRF token missing or wrong", "client_id", a.clientID)
		l.fail(w, http.StatusForbidden, "This form was not sent from the sign-in page of this browser (CSRF check failed).")
		return nil, false
	}
	return a, true
}

func equalSecret(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func (l *loginUI) submitLogin(w http.ResponseWriter, r *http.Request) {
	a, ok := l.formRequest(w, r)
	if !ok {
		return
	}
	username := r.PostForm.Get("username")
	u, ok := l.store.checkCredentials(username, r.PostForm.Get("password"))
	if !ok {
		l.metrics.logins.WithLabelValues("failure").Inc()
		l.log.Info("login failed", "username", username, "client_id", a.clientID)
		l.render(w, http.StatusUnauthorized, "login", l.loginData(a, username, errNoUser.Error()))
		return
	}
	if err := l.store.setUser(a.id, u.Username); err != nil {
		l.fail(w, http.StatusConflict, err.Error())
		return
	}
	l.metrics.logins.WithLabelValues("success").Inc()
	l.log.Info("login", "username", u.Username, "client_id", a.clientID)
	if l.secondFactor(w, r, a, u) { // a second step when the client asked for a stronger sign-in
		return
	}
	l.showConsent(w, a, u)
}

// showConsent renders the consent page of a signed-in request.
func (l *loginUI) showConsent(w http.ResponseWriter, a *authRequest, u User) {
	granted, refused := l.store.grantable(a, u)
	d := l.page("Authorize")
	d.ID, d.CSRF, d.ClientID, d.Username = a.id, a.csrf, a.clientID, u.Username
	d.Granted, d.Refused = l.views(granted), l.views(refused)
	l.render(w, http.StatusOK, "consent", d)
}

func (l *loginUI) views(scopes []string) []scopeView {
	var out []scopeView
	for _, s := range scopes {
		if s == oidc.ScopeOpenID || s == oidc.ScopeOfflineAccess {
			continue // protocol scopes, not permissions to consent to
		}
		out = append(out, scopeView{Name: s, Description: l.scopeDesc[s]})
	}
	return out
}

// chosen is what the user granted: the grantable API scopes whose boxes were checked, and the
// OpenID Connect scopes the client asked for (openid, offline_access: no permission on the
// API, not offered as boxes). A scope the page did not offer is a tampered form: bad names it.
func chosen(grantable, checked []string) (granted []string, bad string) {
	var out []string
	for _, sc := range checked {
		if reservedScope(sc) || !slices.Contains(grantable, sc) {
			return nil, sc
		}
	}
	for _, sc := range grantable {
		if reservedScope(sc) || slices.Contains(checked, sc) {
			out = append(out, sc)
		}
	}
	return out, ""
}

func (l *loginUI) submitConsent(w http.ResponseWriter, r *http.Request) {
	a, ok := l.formRequest(w, r)
	if !ok {
		return
	}
	if a.subject == "" || (a.wantsSecondFactor() && a.acr != ACRMFA) {
		l.fail(w, http.StatusForbidden, "Sign in first.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: csrfCookieName(a.id), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	switch r.PostForm.Get("decision") {
	case "allow":
		u, known := l.store.users[a.subject]
		if !known {
			l.fail(w, http.StatusForbidden, "Unknown user.")
			return
		}
		grantable, _ := l.store.grantable(a, u)
		granted, bad := chosen(grantable, r.PostForm["scope"])
		if bad != "" {
			l.fail(w, http.StatusBadRequest, fmt.Sprintf("The scope %q was not offered on this page.", bad))
			return
		}
		if err := l.store.grantScopes(a.id, granted); err != nil {
			l.fail(w, http.StatusConflict, err.Error())
			return
		}
		l.log.Info("consent", "username", a.subject, "client_id", a.clientID, "scopes", granted)
		http.Redirect(w, r, l.callbackPath+"?"+url.Values{"id": {a.id}}.Encode(), http.StatusSeeOther)
	case "deny":
		l.log.Info("consent denied", "username", a.subject, "client_id", a.clientID)
		_ = l.store.DeleteAuthRequest(r.Context(), a.id)
		op.AuthRequestError(w, r, a, oidc.ErrAccessDenied().WithDescription("the user denied the request"), l.authorizer)
	default:
		l.fail(w, http.StatusBadRequest, "Choose Allow or Deny.")
	}
}
