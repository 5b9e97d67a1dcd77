// Package oauthclient is the demo's OAuth 2.0 client on golang.org/x/oauth2: the authorization
// code flow with PKCE and a loopback redirect (RFC 8252), client credentials, refresh, a 0600
// token cache, and local decoding of JWTs.
package oauthclient

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Endpoints are the provider's endpoints a client needs.
type Endpoints struct {
	Issuer   string `json:"issuer"`
	AuthURL  string `json:"authorization_endpoint"`
	TokenURL string `json:"token_endpoint"`
}

// Discover reads the provider's metadata (OpenID Connect Discovery) from the issuer.
func Discover(ctx context.Context, hc *http.Client, issuer string) (Endpoints, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Endpoints{}, fmt.Errorf("issuer %q: %w", issuer, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Endpoints{}, fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Endpoints{}, fmt.Errorf("discovery: GET %s: %s", u, resp.Status)
	}
	var ep Endpoints
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ep); err != nil {
		return Endpoints{}, fmt.Errorf("discovery: GET %s: %w", u, err)
	}
	if ep.Issuer != strings.TrimSuffix(issuer, "/") {
		return Endpoints{}, fmt.Errorf("discovery: GET %s: issuer %q does not match %q", u, ep.Issuer, issuer)
	}
	if ep.TokenURL == "" {
		return Endpoints{}, fmt.Errorf("discovery: GET %s: no token_endpoint", u)
	}
	return ep, nil
}

// LoginOptions configure the authorization code flow.
type LoginOptions struct {
	Endpoints
	ClientID string
	Scopes   []string
	// Timeout bounds the wait for the browser's redirect (0: wait until ctx is done).
	Timeout time.Duration
	// ShowURL is called with the URL the user must open (print it, or open a browser).
	ShowURL func(authURL string)
	// ListenAddr is the loopback address of the redirect listener (default "127.0.0.1:0", a
	// random port: RFC 8252 §7.3 requires the provider to accept any port).
	ListenAddr string
	// ACRValues and MaxAge ask the provider for an authentication of one of these context
	// classes, at most MaxAge ago (the OpenID Connect acr_values and max_age request
	// parameters, which RFC 9470 §4 uses for step-up). Empty and nil: no such request.
	ACRValues []string
	MaxAge    *time.Duration
}

// CallbackPath is the redirect URI's path; the provider registers http://127.0.0.1/callback.
const CallbackPath = "/callback"

// callbackShutdownTimeout bounds how long Login waits for the callback page to reach a slow
// browser before it closes the listener anyway.
const callbackShutdownTimeout = 5 * time.Second

// Login runs the authorization code flow with PKCE (S256) for a public client: it listens on a
// loopback port, has the user open the authorization URL, waits for the redirect, checks the
// state and exchanges the code.
func Login(ctx context.Context, hc *http.Client, o LoginOptions) (*Entry, error) {
	if o.ClientID == "" {
		return nil, errors.New("login: client ID is required")
	}
	if o.AuthURL == "" || o.TokenURL == "" {
		return nil, errors.New("login: authorization and token endpoints are required")
	}
	addr := o.ListenAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("login: listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("login: listen address %q: the redirect listener must be on a loopback IP (RFC 8252 §8.3)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("login: redirect listener: %w", err)
	}
	defer ln.Close()

	conf := &oauth2.Config{
		ClientID:    o.ClientID,
		Endpoint:    oauth2.Endpoint{AuthURL: o.AuthURL, TokenURL: o.TokenURL, AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: "http://" + ln.Addr().String() + CallbackPath,
		Scopes:      o.Scopes,
	}
	verifier := oauth2.GenerateVerifier()
	state := oauth2.GenerateVerifier() // 32 random bytes, base64url: a fine state value too
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if len(o.ACRValues) > 0 {
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", strings.Join(o.ACRValues, " ")))
	}
	if o.MaxAge != nil {
		if *o.MaxAge < 0 {
			return nil, fmt.Errorf("login: max_age %s is negative", *o.MaxAge)
		}
		opts = append(opts, oauth2.SetAuthURLParam("max_age", strconv.FormatInt(int64(*o.MaxAge/time.Second), 10)))
	}
	authURL := conf.AuthCodeURL(state, opts...)

	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	results := make(chan callbackResult, 1)
	srv := &http.Server{Handler: callbackHandler(state, results), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	// Shut down gracefully: the browser that delivered the code must get its whole page, not a
	// reset (the handler hands the code over only after the page is flushed, and Shutdown waits
	// for that handler to return).
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callbackShutdownTimeout)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			_ = srv.Close()
		}
	}()

	if o.ShowURL != nil {
		o.ShowURL(authURL)
	}
	var res callbackResult
	select {
	case res = <-results:
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("login: no redirect from the browser within %s", o.Timeout)
		}
		return nil, fmt.Errorf("login: %w", ctx.Err())
	}
	if res.err != nil {
		return nil, fmt.Errorf("login: %w", res.err)
	}
	tok, err := conf.Exchange(context.WithValue(ctx, oauth2.HTTPClient, hc), res.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("login: code exchange: %w", describe(err))
	}
	return newEntry("authorization_code", o.Issuer, o.ClientID, o.TokenURL, tok), nil
}

type callbackResult struct {
	code string
	err  error
}

var callbackPage = template.Must(template.New("cb").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>scopegate token login</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 34rem; margin: 2rem auto">
<h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>
`))

// callbackHandler answers the one redirect the flow waits for; later requests find the result
// already claimed and get an error page. The result is handed to Login only after the page has
// been written and flushed, so Login's shutdown never cuts the browser's response short.
func callbackHandler(state string, results chan<- callbackResult) http.Handler {
	var claimed atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+CallbackPath, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var res callbackResult
		switch {
		case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1:
			// Not our request (or forged): ignore it and keep waiting for the real redirect.
			w.WriteHeader(http.StatusBadRequest)
			_ = callbackPage.Execute(w, map[string]string{"Title": "Unexpected request", "Message": "The state parameter does not match this login."})
			return
		case q.Get("error") != "":
			res.err = fmt.Errorf("the provider answered %s: %s", q.Get("error"), q.Get("error_description"))
		case q.Get("code") == "":
			res.err = errors.New("the redirect carries neither a code nor an error")
		default:
			res.code = q.Get("code")
		}
		if !claimed.CompareAndSwap(false, true) {
			w.WriteHeader(http.StatusConflict)
			_ = callbackPage.Execute(w, map[string]string{"Title": "Already done", "Message": "This login has already completed."})
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if res.err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_ = callbackPage.Execute(w, map[string]string{"Title": "Login failed", "Message": res.err.Error()})
		} else {
			_ = callbackPage.Execute(w, map[string]string{"Title": "Logged in", "Message": "You can close this window and return to the terminal."})
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		results <- res // buffered for exactly the one claimed result
	})
	return mux
}

// ClientCredentialsOptions configure the client credentials grant.
type ClientCredentialsOptions struct {
	Issuer, TokenURL string
	ClientID, Secret string
	Scopes           []string
}

// ClientCredentials gets a token for a confidential client acting on its own behalf.
func ClientCredentials(ctx context.Context, hc *http.Client, o ClientCredentialsOptions) (*Entry, error) {
	if o.ClientID == "" || o.Secret == "" {
		return nil, errors.New("client credentials: client ID and secret are required")
	}
	if o.TokenURL == "" {
		return nil, errors.New("client credentials: token endpoint is required")
	}
	conf := &clientcredentials.Config{ClientID: o.ClientID, ClientSecret: o.Secret, TokenURL: o.TokenURL, Scopes: o.Scopes}
	tok, err := conf.Token(context.WithValue(ctx, oauth2.HTTPClient, hc))
	if err != nil {
		return nil, fmt.Errorf("client credentials: %w", describe(err))
	}
	return newEntry("client_credentials", o.Issuer, o.ClientID, o.TokenURL, tok), nil
}

// Refresh uses the entry's refresh token (a public client's; no secret is ever cached). The
// provider rotates refresh tokens: the returned entry holds the new one, the old is dead.
func Refresh(ctx context.Context, hc *http.Client, e *Entry, scopes []string) (*Entry, error) {
	if e.RefreshToken == "" {
		return nil, fmt.Errorf("refresh: the cached token for %q has no refresh token (get one with `scopegate token login`)", e.ClientID)
	}
	conf := &oauth2.Config{
		ClientID: e.ClientID,
		Endpoint: oauth2.Endpoint{TokenURL: e.TokenURL, AuthStyle: oauth2.AuthStyleInParams},
		Scopes:   scopes,
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	// An expired token makes the token source refresh.
	tok, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: e.RefreshToken, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			// Refresh tokens rotate: one that was used before (a copy of the cache, a
			// second client) makes the provider revoke the whole grant, so the newest
			// refresh token is dead too. Only a new login helps.
			return nil, fmt.Errorf("refresh: %w: the refresh token was refused (already used, expired or revoked); "+
				"a reused refresh token makes the provider revoke the whole grant: sign in again with `scopegate token login`", describe(err))
		}
		return nil, fmt.Errorf("refresh: %w", describe(err))
	}
	return newEntry("refresh_token", e.Issuer, e.ClientID, e.TokenURL, tok), nil
}

// describe turns an oauth2.RetrieveError into "error: description".
func describe(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode != "" {
		if re.ErrorDescription != "" {
			return fmt.Errorf("%s: %s", re.ErrorCode, re.ErrorDescription)
		}
		return errors.New(re.ErrorCode)
	}
	return err
}

// ResolveEndpoints uses the given endpoint URLs when both are set, and discovery otherwise.
// needAuth is false for flows that only use the token endpoint.
func ResolveEndpoints(ctx context.Context, hc *http.Client, issuer, authURL, tokenURL string, needAuth bool) (Endpoints, error) {
	if tokenURL != "" && (authURL != "" || !needAuth) {
		return Endpoints{Issuer: issuer, AuthURL: authURL, TokenURL: tokenURL}, nil
	}
	if issuer == "" {
		return Endpoints{}, errors.New("an issuer (for discovery) or explicit endpoint URLs are required")
	}
	ep, err := Discover(ctx, hc, issuer)
	if err != nil {
		return Endpoints{}, err
	}
	if authURL != "" {
		ep.AuthURL = authURL
	}
	if tokenURL != "" {
		ep.TokenURL = tokenURL
	}
	if needAuth && ep.AuthURL == "" {
		return Endpoints{}, fmt.Errorf("discovery: %s has no authorization_endpoint", issuer)
	}
	return ep, nil
}
