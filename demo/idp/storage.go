package idp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

const (
	// authRequestLifetime bounds how long a user may take on the login and consent pages.
	authRequestLifetime = 10 * time.Minute
	// codeLifetime is the authorization code's lifetime (RFC 6749 §4.1.2 recommends at most 10m).
	codeLifetime = time.Minute
	// pruneInterval is how often expired entries are swept, at most.
	pruneInterval = time.Minute
)

var (
	errNotFound          = errors.New("not found")
	errRefreshReused     = errors.New("refresh token was already used: its whole grant is revoked")
	errRefreshExpired    = errors.New("refresh token expired")
	errAuthReqExpired    = errors.New("authorization request expired")
	errCodeAlreadyIssued = errors.New("an authorization code was already issued for this request")
)

// storage is the in-memory, concurrency-safe op.Storage: clients and users come from the config;
// authorization requests, codes and refresh tokens live in maps behind one mutex.
type storage struct {
	issuer   string
	audience string
	tokens   Tokens
	clients  map[string]*client
	users    map[string]User
	keys     *keyRing
	now      func() time.Time

	mu           sync.Mutex
	authRequests map[string]*authRequest
	codes        map[string]string         // authorization code → auth request ID
	refresh      map[string]*refreshRecord // SHA-256(refresh token) → grant
	usedRefresh  map[string]usedRefresh    // SHA-256(rotated refresh token) → its grant family
	opaque       map[string]*opaqueRecord  // opaque access token ID → what it grants
	lastPrune    time.Time
}

// opaqueRecord is what the provider knows of an opaque access token it issued: the token
// itself carries only its ID and subject, encrypted.
type opaqueRecord struct {
	subject, clientID string
	scopes            []string
	issuedAt, expires time.Time
	jkt               string // the DPoP key the token is bound to, if any
	x5t               string // the client certificate it is bound to, if any
	authn             authn  // the user's authentication (none for client credentials)
}

// authRequest is one authorization request from /authorize to the code exchange.
// The storage hands out copies; only the storage mutates the stored one.
type authRequest struct {
	id            string
	createdAt     time.Time
	clientID      string
	redirectURI   string
	state         string
	nonce         string
	requested     []string // scopes after the library dropped those the client may not have
	responseType  oidc.ResponseType
	responseMode  oidc.ResponseMode
	codeChallenge *oidc.CodeChallenge
	csrf          string // binds the login and consent forms to the browser that opened them
	// acrValues are the authentication context classes the client asked for (OpenID Connect
	// acr_values, RFC 9470 §4): ACRMFA among them adds the second-factor step.
	acrValues []string

	subject  string    // set once the user logged in
	authTime time.Time // when the user logged in
	acr      string    // the authentication context class reached: ACRPassword or ACRMFA
	amr      []string  // the methods used (RFC 8176)
	granted  []string  // set at consent: requested ∩ client-allowed ∩ user-grantable (+ OIDC scopes)
	done     bool
	code     string
	codeAt   time.Time

	// secondFactorTries counts wrong second-factor codes on this request.
	secondFactorTries int
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return a.acr }
func (a *authRequest) GetAudience() []string                 { return []string{a.clientID} } // the ID token's audience
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.codeChallenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

func (a *authRequest) GetAMR() []string {
	if a.subject == "" {
		return nil
	}
	return slices.Clone(a.amr)
}

func (a *authRequest) GetScopes() []string {
	if a.done {
		return a.granted
	}
	return a.requested
}

func (a *authRequest) clone() *authRequest {
	c := *a
	c.requested = slices.Clone(a.requested)
	c.granted = slices.Clone(a.granted)
	c.acrValues = slices.Clone(a.acrValues)
	c.amr = slices.Clone(a.amr)
	return &c
}

// refreshRecord is what a refresh token stands for. Rotation replaces the token, not the grant:
// scopes and auth time stay those of the original authorization (RFC 6749 §6).
type refreshRecord struct {
	// jkt binds the grant to a DPoP key (RFC 9449 §5): set when a public client started it
	// with a proof; every refresh must then come with a proof of the same key.
	jkt       string
	family    string
	clientID  string
	subject   string
	scopes    []string
	authTime  time.Time
	acr       string
	amr       []string
	expiresAt time.Time
}

type usedRefresh struct {
	family string
	until  time.Time
}

// refreshRequest is the op.RefreshTokenRequest for one refresh grant.
type refreshRequest struct {
	rec     refreshRecord
	current []string // narrowed scopes for this access token, if the client asked for fewer
}

func (r *refreshRequest) GetAMR() []string       { return r.rec.amr }
func (r *refreshRequest) GetACR() string         { return r.rec.acr }
func (r *refreshRequest) GetAudience() []string  { return []string{r.rec.clientID} }
func (r *refreshRequest) GetAuthTime() time.Time { return r.rec.authTime }
func (r *refreshRequest) GetClientID() string    { return r.rec.clientID }
func (r *refreshRequest) GetSubject() string     { return r.rec.subject }
func (r *refreshRequest) GetScopes() []string {
	if r.current != nil {
		return r.current
	}
	return r.rec.scopes
}
func (r *refreshRequest) SetCurrentScopes(s []string) { r.current = slices.Clone(s) }

// clientCredentialsRequest is the op.TokenRequest of a client credentials grant: no resource
// owner, so the subject is the client (RFC 9068 §2.2).
type clientCredentialsRequest struct {
	clientID string
	audience string
	scopes   []string
}

func (c *clientCredentialsRequest) GetSubject() string    { return c.clientID }
func (c *clientCredentialsRequest) GetAudience() []string { return []string{c.audience} }
func (c *clientCredentialsRequest) GetScopes() []string   { return c.scopes }

func newStorage(cfg *Config, keys *keyRing, loginPath string, now func() time.Time) *storage {
	s := &storage{
		issuer:       cfg.Issuer,
		audience:     cfg.API.Audience,
		tokens:       cfg.Tokens,
		clients:      map[string]*client{},
		users:        map[string]User{},
		keys:         keys,
		now:          now,
		authRequests: map[string]*authRequest{},
		codes:        map[string]string{},
		refresh:      map[string]*refreshRecord{},
		usedRefresh:  map[string]usedRefresh{},
		opaque:       map[string]*opaqueRecord{},
	}
	for _, c := range cfg.Clients {
		s.clients[c.ID] = newClient(c, loginPath, cfg.Tokens.IDTokenLifetime)
	}
	for _, u := range cfg.Users {
		s.users[u.Username] = u
	}
	return s
}

// randomToken returns n random bytes, base64url-encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

// pruneLocked drops expired entries, at most once per pruneInterval.
func (s *storage) pruneLocked() {
	now := s.now()
	if now.Sub(s.lastPrune) < pruneInterval {
		return
	}
	s.lastPrune = now
	for id, a := range s.authRequests {
		if now.Sub(a.createdAt) > authRequestLifetime {
			delete(s.authRequests, id)
			if a.code != "" {
				delete(s.codes, a.code)
			}
		}
	}
	for h, r := range s.refresh {
		if !now.Before(r.expiresAt) {
			delete(s.refresh, h)
		}
	}
	for h, u := range s.usedRefresh {
		if !now.Before(u.until) {
			delete(s.usedRefresh, h)
		}
	}
	for id, r := range s.opaque {
		if !now.Before(r.expires) {
			delete(s.opaque, id)
		}
	}
}

// recordOpaque remembers an opaque access token for introspection.
func (s *storage) recordOpaque(id string, r *opaqueRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked()
	s.opaque[id] = r
}

// --- authorization requests ---

func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	cl, ok := s.clients[req.ClientID]
	if !ok {
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client")
	}
	if slices.Contains(req.Prompt, oidc.PromptNone) {
		// The demo provider keeps no login session, so it can never answer without the user.
		return nil, oidc.ErrLoginRequired().WithDescription("the demo provider has no session: prompt=none cannot be satisfied")
	}
	var challenge *oidc.CodeChallenge
	if req.CodeChallenge != "" {
		if req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
			return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge_method must be S256")
		}
		challenge = &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: oidc.CodeChallengeMethodS256}
	} else if cl.public {
		return nil, oidc.ErrInvalidRequest().WithDescription("a public client must use PKCE: code_challenge with code_challenge_method S256 (RFC 7636)")
	}
	a := &authRequest{
		id:            randomToken(24),
		createdAt:     s.now(),
		clientID:      req.ClientID,
		redirectURI:   req.RedirectURI,
		state:         req.State,
		nonce:         req.Nonce,
		requested:     slices.Clone(req.Scopes),
		responseType:  req.ResponseType,
		responseMode:  req.ResponseMode,
		codeChallenge: challenge,
		csrf:          randomToken(32),
		acrValues:     slices.Clone(req.ACRValues),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked()
	s.authRequests[a.id] = a
	return a.clone(), nil
}

func (s *storage) liveAuthRequestLocked(id string) (*authRequest, error) {
	a, ok := s.authRequests[id]
	if !ok {
		return nil, fmt.Errorf("authorization request: %w", errNotFound)
	}
	if s.now().Sub(a.createdAt) > authRequestLifetime {
		return nil, errAuthReqExpired
	}
	return a, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	return asOp(s.authRequest(id))
}

// authRequest returns a copy of a live request for the login UI.
func (s *storage) authRequest(id string) (*authRequest, error) {
	return s.copyOf(s.liveAuthRequestLocked, id)
}

// AuthRequestByCode looks a request up by code without using the code up; the code exchange
// uses takeAuthRequestByCode, which does.
func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	return asOp(s.copyOf(s.byCodeLocked, code))
}

// copyOf looks a request up with findLocked under the lock and returns a copy of it.
func (s *storage) copyOf(findLocked func(string) (*authRequest, error), key string) (*authRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := findLocked(key)
	if err != nil {
		return nil, err
	}
	return a.clone(), nil
}

// asOp hands a request to the OpenID provider: a nil one as a nil interface, not a typed nil.
func asOp(a *authRequest, err error) (op.AuthRequest, error) {
	if err != nil {
		return nil, err
	}
	return a, nil
}

// updateLive runs change on the live request id under the lock.
func (s *storage) updateLive(id string, change func(a *authRequest) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.liveAuthRequestLocked(id)
	if err != nil {
		return err
	}
	return change(a)
}

func (s *storage) byCodeLocked(code string) (*authRequest, error) {
	id, ok := s.codes[code]
	if !ok {
		return nil, fmt.Errorf("authorization code: %w", errNotFound)
	}
	a, err := s.liveAuthRequestLocked(id)
	if err != nil {
		return nil, err
	}
	if s.now().Sub(a.codeAt) > codeLifetime {
		return nil, errors.New("authorization code expired")
	}
	return a, nil
}

// takeAuthRequestByCode returns the request the code was issued for and removes both, so a
// code is exchanged at most once, even by concurrent requests.
func (s *storage) takeAuthRequestByCode(code string) (*authRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.byCodeLocked(code)
	delete(s.codes, code)
	if err != nil {
		return nil, err
	}
	delete(s.authRequests, a.id)
	return a, nil
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	return s.updateLive(id, func(a *authRequest) error {
		if !a.done {
			return oidc.ErrInteractionRequired().WithDescription("the user has not consented")
		}
		if a.code != "" {
			return errCodeAlreadyIssued
		}
		a.code, a.codeAt = code, s.now()
		s.codes[code] = id
		return nil
	})
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.authRequests[id]; ok {
		if a.code != "" {
			delete(s.codes, a.code)
		}
		delete(s.authRequests, id)
	}
	return nil
}

// checkCredentials checks a demo user's password in constant time.
func (s *storage) checkCredentials(username, password string) (User, bool) {
	u, ok := s.users[username]
	want := sha256.Sum256([]byte(u.Password))
	got := sha256.Sum256([]byte(password))
	match := subtle.ConstantTimeCompare(want[:], got[:]) == 1
	return u, ok && match
}

// setUser records who logged in on an auth request that nobody logged in on yet.
func (s *storage) setUser(id, subject string) error {
	return s.updateLive(id, func(a *authRequest) error {
		if a.subject != "" && a.subject != subject {
			return errors.New("another user already logged in on this authorization request")
		}
		a.subject, a.authTime, a.acr, a.amr = subject, s.now(), ACRPassword, []string{AMRPassword}
		return nil
	})
}

// grantScopes completes the request with the consented scopes.
func (s *storage) grantScopes(id string, granted []string) error {
	return s.updateLive(id, func(a *authRequest) error {
		if a.subject == "" {
			return errors.New("nobody logged in on this authorization request")
		}
		if a.done {
			return errors.New("consent was already given for this authorization request")
		}
		a.granted, a.done = slices.Clone(granted), true
		return nil
	})
}

// grantable is requested ∩ client-allowed ∩ user-grantable for API scopes; OpenID Connect scopes
// that were requested pass through (they do not appear in the access token).
func (s *storage) grantable(a *authRequest, u User) (granted, refused []string) {
	cl := s.clients[a.clientID]
	for _, sc := range a.requested {
		switch {
		case reservedScope(sc):
			granted = append(granted, sc)
		case cl != nil && cl.IsScopeAllowed(sc) && slices.Contains(u.Scopes, sc):
			granted = append(granted, sc)
		default:
			refused = append(refused, sc)
		}
	}
	return granted, refused
}

// --- tokens ---

// newAccessToken returns a fresh token ID and the token's issue and expiry times.
func (s *storage) newAccessToken() (jti string, iat, exp time.Time) {
	iat = s.now().Truncate(time.Second)
	return randomToken(16), iat, iat.Add(s.tokens.AccessTokenLifetime)
}

func (s *storage) CreateAccessToken(_ context.Context, _ op.TokenRequest) (string, time.Time, error) {
	jti, _, exp := s.newAccessToken()
	return jti, exp, nil
}

func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	rt, err := s.issueRefresh(req, current, "")
	if err != nil {
		return "", "", time.Time{}, err
	}
	jti, _, exp := s.newAccessToken()
	return jti, rt, exp, nil
}

// issueRefresh starts a refresh grant (current == "") or rotates current: the old token stops
// working the moment the new one exists. Presenting a rotated token again revokes the grant
// (OAuth 2.0 Security BCP, refresh token rotation).
func (s *storage) issueRefresh(req op.TokenRequest, current, jkt string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked()
	now := s.now()
	var rec refreshRecord
	if current == "" {
		a, ok := req.(*authRequest)
		if !ok {
			return "", fmt.Errorf("refresh token: unexpected request type %T", req)
		}
		rec = refreshRecord{
			family:   randomToken(12),
			clientID: a.clientID,
			subject:  a.subject,
			scopes:   slices.Clone(a.granted),
			authTime: a.authTime,
			acr:      a.acr,
			amr:      a.GetAMR(),
			jkt:      jkt,
		}
	} else {
		old, err := s.refreshLocked(current)
		if err != nil {
			return "", err
		}
		rec = *old
		h := hashToken(current)
		delete(s.refresh, h)
		s.usedRefresh[h] = usedRefresh{family: rec.family, until: old.expiresAt}
	}
	rt := randomToken(32)
	rec.expiresAt = now.Add(s.tokens.RefreshTokenLifetime)
	s.refresh[hashToken(rt)] = &rec
	return rt, nil
}

// refreshLocked finds a live refresh token; a reused one revokes its family.
func (s *storage) refreshLocked(token string) (*refreshRecord, error) {
	h := hashToken(token)
	rec, ok := s.refresh[h]
	if !ok {
		if used, wasUsed := s.usedRefresh[h]; wasUsed {
			s.revokeFamilyLocked(used.family)
			return nil, errRefreshReused
		}
		return nil, fmt.Errorf("refresh token: %w", errNotFound)
	}
	if !s.now().Before(rec.expiresAt) {
		return nil, errRefreshExpired
	}
	return rec, nil
}

func (s *storage) revokeFamilyLocked(family string) {
	for h, r := range s.refresh {
		if r.family == family {
			delete(s.refresh, h)
		}
	}
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.refreshLocked(token)
	if err != nil {
		return nil, err
	}
	c := *rec
	c.scopes, c.amr = slices.Clone(rec.scopes), slices.Clone(rec.amr)
	return &refreshRequest{rec: c}, nil
}

func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.refresh {
		if r.subject == userID && r.clientID == clientID {
			s.revokeFamilyLocked(r.family)
		}
	}
	return nil
}

// GetRefreshTokenInfo lets the revocation endpoint recognise our opaque refresh tokens.
func (s *storage) GetRefreshTokenInfo(_ context.Context, clientID, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.refresh[hashToken(token)]
	if !ok || rec.clientID != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rec.subject, token, nil
}

// RevokeToken revokes a refresh token's whole grant (RFC 7009 §2.1). Access tokens are
// self-contained JWTs that expire within minutes; revoking one is accepted and has no effect.
func (s *storage) RevokeToken(_ context.Context, tokenOrID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.refresh[hashToken(tokenOrID)]
	if !ok {
		return nil // RFC 7009 §2.2: an invalid token is not an error
	}
	if rec.clientID != clientID {
		return oidc.ErrInvalidClient().WithDescription("token was issued to another client")
	}
	s.revokeFamilyLocked(rec.family)
	return nil
}

// --- keys ---

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return s.keys.signing(), nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{s.keys.alg}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) { return s.keys.published(), nil }

// --- clients ---

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	cl, ok := s.clients[id]
	if !ok {
		return nil, fmt.Errorf("client %q: %w", id, errNotFound)
	}
	return cl, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	cl, ok := s.clients[id]
	if !ok || !cl.secretMatches(secret) {
		return errors.New("invalid client_id or client_secret")
	}
	return nil
}

// ClientCredentials authenticates a confidential client for the client_credentials grant.
func (s *storage) ClientCredentials(_ context.Context, id, secret string) (op.Client, error) {
	cl, ok := s.clients[id]
	if !ok || !cl.secretMatches(secret) {
		// The library hands this error to the client as is: make it invalid_client (401).
		return nil, oidc.ErrInvalidClient().WithDescription("invalid client_id or client_secret")
	}
	return cl, nil
}

// ClientCredentialsTokenRequest grants requested ∩ client-allowed; no scope asks for all the
// client may have (RFC 6749 §3.3). Asking only for scopes the client may not have is invalid_scope.
func (s *storage) ClientCredentialsTokenRequest(_ context.Context, id string, scopes []string) (op.TokenRequest, error) {
	cl, ok := s.clients[id]
	if !ok {
		return nil, oidc.ErrInvalidClient()
	}
	var granted []string
	if len(scopes) == 0 {
		granted = slices.Clone(cl.scopes)
	} else {
		for _, sc := range scopes {
			if cl.IsScopeAllowed(sc) && !slices.Contains(granted, sc) {
				granted = append(granted, sc)
			}
		}
		if len(granted) == 0 {
			return nil, oidc.ErrInvalidScope().WithDescription("none of the requested scopes is allowed for this client")
		}
	}
	return &clientCredentialsRequest{clientID: id, audience: s.audience, scopes: granted}, nil
}

// --- user info (ID tokens only; the demo has no userinfo endpoint) ---

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	info.Subject = req.GetSubject()
	if slices.Contains(scopes, oidc.ScopeProfile) {
		info.PreferredUsername = req.GetSubject()
	}
	return nil
}

func (s *storage) SetUserinfoFromToken(context.Context, *oidc.UserInfo, string, string, string) error {
	return errors.New("userinfo is not supported by the demo provider")
}

// SetIntrospectionFromToken answers RFC 7662 introspection of an opaque access token from the
// provider's own record of it (the library's example storage reads user info, which client
// credentials subjects lack). Only the API the token is for (the client whose ID is the API's
// audience) learns anything; everyone else, and every unknown or expired token, gets
// active: false.
func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, caller string) error {
	if caller != s.audience {
		return errors.New("only the API may introspect its tokens")
	}
	s.mu.Lock()
	r, ok := s.opaque[tokenID]
	s.mu.Unlock()
	if !ok || r.subject != subject || !s.now().Before(r.expires) {
		return errNotFound
	}
	resp.Issuer = s.issuer
	resp.Subject = r.subject
	resp.ClientID = r.clientID
	resp.Scope = slices.Clone(r.scopes)
	resp.Audience = oidc.Audience{s.audience}
	resp.TokenType = oidc.BearerToken
	resp.IssuedAt = oidc.FromTime(r.issuedAt)
	resp.Expiration = oidc.FromTime(r.expires)
	resp.JWTID = tokenID
	if cnf := confirmation(r.jkt, r.x5t); cnf != nil {
		if r.jkt != "" {
			resp.TokenType = TokenTypeDPoP
		}
		resp.Claims = map[string]any{"cnf": cnf}
	}
	if r.authn.acr != "" {
		// RFC 9470 §6.2 registers acr and auth_time for introspection answers; amr rides along.
		if resp.Claims == nil {
			resp.Claims = map[string]any{}
		}
		resp.Claims["acr"], resp.Claims["amr"] = r.authn.acr, slices.Clone(r.authn.amr)
		resp.AuthTime = oidc.FromTime(r.authn.authTime)
	}
	return nil
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("private_key_jwt client authentication is not supported by the demo provider")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, oidc.ErrUnsupportedGrantType()
}

func (s *storage) Health(context.Context) error { return nil }
