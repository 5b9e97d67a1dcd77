package idp

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"

	"github.com/scopegate/scopegate/internal/oauth"
)

// Paths served on the provider listener. Discovery is at /.well-known/openid-configuration.
const (
	PathAuthorize = "/authorize"
	PathToken     = "/oauth/token"
	PathKeys      = "/keys"
	PathRevoke    = "/revoke"
	// PathIntrospect is the RFC 7662 endpoint for opaque access tokens.
	PathIntrospect = "/oauth/introspect"
	PathLogin      = "/login"
	PathConsent    = "/consent"
	PathHealth     = "/healthz"
)

// Warning is logged at start and shown on every page the provider renders.
const Warning = "scopegate idp is a development identity provider: NOT FOR PRODUCTION"

// Provider is the demo OAuth 2.0 / OpenID Connect provider.
type Provider struct {
	cfg     *Config
	log     *slog.Logger
	store   *storage
	keys    *keyRing
	handler http.Handler
	metrics *metrics
	now     func() time.Time
	proofs  *oauth.ProofChecker // DPoP proofs at the token endpoint (RFC 9449 §5)
	replay  *oauth.ReplayCache  // and the proofs already used there
	crypto  op.Crypto           // seals opaque access tokens (the library's format)
	// drainCut ends Serve's drain early (nil: never).
	drainCut <-chan struct{}
}

// Option changes how New builds a Provider.
type Option func(*options)

type options struct {
	now      func() time.Time
	registry prometheus.Registerer
	drainCut <-chan struct{}
}

// WithDrainCut makes Serve end its drain (drain_delay) early when cut is closed.
func WithDrainCut(cut <-chan struct{}) Option { return func(o *options) { o.drainCut = cut } }

// WithClock replaces time.Now (tests drive token and key expiry with it).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithRegisterer registers the provider's metrics (default: none registered).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registry = r } }

// New builds the provider from a validated config: it generates (or loads) the signing key.
func New(cfg *Config, log *slog.Logger, opts ...Option) (*Provider, error) {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	keys, err := newKeyRing(cfg.Keys, cfg.maxTokenLifetime(), o.now)
	if err != nil {
		return nil, err
	}
	proofs, err := oauth.NewProofChecker(nil, 0)
	if err != nil {
		return nil, err
	}
	p := &Provider{cfg: cfg, log: log, keys: keys, now: o.now, metrics: newMetrics(o.registry), proofs: proofs, drainCut: o.drainCut,
		replay: oauth.NewReplayCache(0, 0, oauth.ReplaySpan(proofs.Window()))}
	p.store = newStorage(cfg, keys, PathLogin, o.now)

	var cryptoKey [32]byte // encrypts authorization codes; new per process
	_, _ = rand.Read(cryptoKey[:])
	scopes := append([]string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeOfflineAccess}, apiScopeNames(cfg)...)
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:                cryptoKey,
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		GrantTypeRefreshToken:    true,
		SupportedUILocales:       []language.Tag{language.English},
		SupportedScopes:          scopes,
		SupportedClaims:          []string{"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "auth_time", "nonce", "acr", "amr", "at_hash", "c_hash", "preferred_username"},
		DefaultLogoutRedirectURI: "/",
	}, p.store, op.StaticIssuer(cfg.Issuer), op.WithAllowInsecure())
	if err != nil {
		return nil, fmt.Errorf("oidc provider: %w", err)
	}
	endpoints := op.Endpoints{
		Authorization: op.NewEndpoint(strings.TrimPrefix(PathAuthorize, "/")),
		Token:         op.NewEndpoint(strings.TrimPrefix(PathToken, "/")),
		JwksURI:       op.NewEndpoint(strings.TrimPrefix(PathKeys, "/")),
		Revocation:    op.NewEndpoint(strings.TrimPrefix(PathRevoke, "/")),
		Introspection: op.NewEndpoint(strings.TrimPrefix(PathIntrospect, "/")),
	}
	p.crypto = provider.Crypto()
	srv := &server{LegacyServer: op.NewLegacyServer(provider, endpoints), p: p}
	opHandler := op.RegisterLegacyServer(srv, op.AuthorizeCallbackHandler(provider))

	mux := http.NewServeMux()
	l := &loginUI{
		store:        p.store,
		log:          log,
		authorizer:   provider,
		callbackPath: PathAuthorize + "/callback",
		issuer:       cfg.Issuer,
		audience:     cfg.API.Audience,
		scopeDesc:    map[string]string{},
		metrics:      p.metrics,
	}
	for _, sc := range cfg.API.Scopes {
		l.scopeDesc[sc.Name] = sc.Description
	}
	mux.HandleFunc("GET "+PathLogin, l.showLogin)
	mux.HandleFunc("POST "+PathLogin, l.submitLogin)
	mux.HandleFunc("POST "+PathConsent, l.submitConsent)
	mux.HandleFunc("POST "+PathSecondFactor, l.submitSecondFactor)
	mux.HandleFunc("GET /{$}", l.home)
	mux.Handle("/", opHandler)
	p.handler = withClientCertificate(mux)
	return p, nil
}

// Handler serves discovery, JWKS, authorize, token, revocation and the login/consent pages.
func (p *Provider) Handler() http.Handler { return p.handler }

// Issuer is the fixed issuer of every token.
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// RotateKeys makes a new signing key active; the previous public key stays in the JWKS until
// every token it signed has expired.
func (p *Provider) RotateKeys() (KeyInfo, error) {
	k, err := p.keys.rotate()
	if err != nil {
		return KeyInfo{}, err
	}
	p.log.Info("signing key rotated", "kid", k.ID, "alg", k.Algorithm)
	return k, nil
}

// Keys lists the published keys, active first.
func (p *Provider) Keys() []KeyInfo { return p.keys.list() }

// AdminHandler serves the admin API: POST /admin/rotate-keys and GET /admin/keys.
func (p *Provider) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/rotate-keys", func(w http.ResponseWriter, _ *http.Request) {
		k, err := p.RotateKeys()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, RotateResult{Active: k, Keys: p.Keys()})
	})
	mux.HandleFunc("GET /admin/keys", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"keys": p.Keys()})
	})
	return mux
}

// RotateResult is the admin API's answer to a key rotation.
type RotateResult struct {
	Active KeyInfo   `json:"active"`
	Keys   []KeyInfo `json:"keys"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func apiScopeNames(cfg *Config) []string {
	names := make([]string, 0, len(cfg.API.Scopes))
	for _, s := range cfg.API.Scopes {
		names = append(names, s.Name)
	}
	return names
}

// server extends the library's LegacyServer: the library parses and validates requests,
// authenticates clients and checks PKCE; these overrides mint RFC 9068 access tokens
// (`typ: at+jwt`, audience = the API), which the library's own token builder does not.
type server struct {
	*op.LegacyServer
	p *Provider
}

// Discovery trims the library's metadata to what this provider really does: the authorization
// code flow only (no implicit, no JWT bearer grant); introspection with client_secret_basic.
func (s *server) Discovery(ctx context.Context, r *op.Request[struct{}]) (*op.Response, error) {
	resp, err := s.LegacyServer.Discovery(ctx, r)
	if err != nil {
		return nil, err
	}
	if d, ok := resp.Data.(*oidc.DiscoveryConfiguration); ok {
		d.ResponseTypesSupported = []string{string(oidc.ResponseTypeCode)}
		d.GrantTypesSupported = []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeClientCredentials}
		d.IntrospectionEndpointAuthMethodsSupported = []oidc.AuthMethod{oidc.AuthMethodBasic}
		d.IntrospectionEndpointAuthSigningAlgValuesSupported = nil
		d.RevocationEndpointAuthSigningAlgValuesSupported = nil
		d.ResponseModesSupported = []string{"query"}
		d.ACRValuesSupported = ACRValuesSupported()
	}
	return resp, nil
}

// VerifyAuthRequest answers an unknown client_id with 400 invalid_request on the page itself
// (RFC 6749 §4.1.2.1: never redirect for an unverified client) rather than the library's 500.
func (s *server) VerifyAuthRequest(ctx context.Context, r *op.Request[oidc.AuthRequest]) (*op.ClientRequest[oidc.AuthRequest], error) {
	if _, ok := s.p.store.clients[r.Data.ClientID]; !ok && r.Data.ClientID != "" {
		return nil, oidc.ErrInvalidRequest().WithDescription("unknown client_id")
	}
	return s.LegacyServer.VerifyAuthRequest(ctx, r)
}

// VerifyClient answers a failed client authentication with 401 invalid_client (RFC 6749 §5.2).
func (s *server) VerifyClient(ctx context.Context, r *op.Request[op.ClientCredentials]) (op.Client, error) {
	c, err := s.LegacyServer.VerifyClient(ctx, r)
	var e *oidc.Error
	if err != nil && errors.As(err, &e) && e.ErrorType == oidc.InvalidClient {
		return nil, op.NewStatusError(err, http.StatusUnauthorized)
	}
	return c, err
}

// CodeExchange: authorization_code grant.
func (s *server) CodeExchange(ctx context.Context, r *op.ClientRequest[oidc.AccessTokenRequest]) (*op.Response, error) {
	authReq, err := s.p.store.takeAuthRequestByCode(r.Data.Code)
	if err != nil {
		return nil, oidc.ErrInvalidGrant().WithDescription("invalid or expired authorization code").WithParent(err)
	}
	if r.Client.GetID() != authReq.clientID {
		return nil, oidc.ErrInvalidGrant().WithDescription("the code was issued to another client")
	}
	if r.Client.AuthMethod() == oidc.AuthMethodNone || r.Data.CodeVerifier != "" || authReq.codeChallenge != nil {
		if err := op.AuthorizeCodeChallenge(r.Data.CodeVerifier, authReq.codeChallenge); err != nil {
			return nil, err
		}
	}
	if r.Data.RedirectURI != authReq.redirectURI {
		return nil, oidc.ErrInvalidGrant().WithDescription("redirect_uri does not match the authorization request")
	}
	jkt, err := s.proofKey(r.Header)
	if err != nil {
		return nil, err
	}
	resp, err := s.p.tokenResponse(ctx, authReq, r.Client.(*client), "", r.Data.Code, jkt)
	if err != nil {
		return nil, err
	}
	s.p.metrics.issued.WithLabelValues(GrantAuthorizationCode).Inc()
	return op.NewResponse(resp), nil
}

// RefreshToken: refresh_token grant with rotation.
func (s *server) RefreshToken(ctx context.Context, r *op.ClientRequest[oidc.RefreshTokenRequest]) (*op.Response, error) {
	req, err := op.RefreshTokenRequestByRefreshToken(ctx, s.p.store, r.Data.RefreshToken)
	if err != nil {
		return nil, err
	}
	if r.Client.GetID() != req.GetClientID() {
		return nil, oidc.ErrInvalidGrant().WithDescription("the refresh token was issued to another client")
	}
	if err := op.ValidateRefreshTokenScopes(r.Data.Scopes, req); err != nil {
		return nil, err
	}
	jkt, err := s.proofKey(r.Header)
	if err != nil {
		return nil, err
	}
	if bound := req.(*refreshRequest).rec.jkt; bound != "" && jkt != bound {
		return nil, oidc.ErrInvalidGrant().WithDescription("the refresh token is bound to a DPoP key: send a proof signed with it")
	}
	resp, err := s.p.tokenResponse(ctx, req.(*refreshRequest), r.Client.(*client), r.Data.RefreshToken, "", jkt)
	if err != nil {
		return nil, err
	}
	s.p.metrics.issued.WithLabelValues(GrantRefreshToken).Inc()
	return op.NewResponse(resp), nil
}

// ClientCredentialsExchange: client_credentials grant.
func (s *server) ClientCredentialsExchange(ctx context.Context, r *op.ClientRequest[oidc.ClientCredentialsRequest]) (*op.Response, error) {
	req, err := s.p.store.ClientCredentialsTokenRequest(ctx, r.Client.GetID(), r.Data.Scope)
	if err != nil {
		return nil, err
	}
	jkt, err := s.proofKey(r.Header)
	if err != nil {
		return nil, err
	}
	resp, err := s.p.tokenResponse(ctx, req.(*clientCredentialsRequest), r.Client.(*client), "", "", jkt)
	if err != nil {
		return nil, err
	}
	s.p.metrics.issued.WithLabelValues(GrantClientCredentials).Inc()
	return op.NewResponse(resp), nil
}

// certKey carries, in a token request's context, the SHA-256 thumbprint of the client
// certificate the TLS connection verified (RFC 8705 §3).
type certKey struct{}

// withClientCertificate records a verified client certificate's thumbprint for the grant
// handlers: with TLS and a client CA (the provider's own listener, or a proxy terminating
// nothing), a client that presents a certificate gets certificate-bound tokens. An
// unverified certificate binds nothing.
func withClientCertificate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 {
			r = r.WithContext(context.WithValue(r.Context(), certKey{}, oauth.CertificateThumbprint(r.TLS.PeerCertificates[0].Raw)))
		}
		next.ServeHTTP(w, r)
	})
}

// certificateThumbprint is the x5t#S256 of the request's verified client certificate, or "".
func certificateThumbprint(ctx context.Context) string {
	s, _ := ctx.Value(certKey{}).(string)
	return s
}

// proofKey checks the token request's DPoP proof, if it has one (RFC 9449 §5), and returns
// the thumbprint of its key; no proof means a plain bearer token.
func (s *server) proofKey(h http.Header) (string, error) {
	proofs := h.Values("DPoP")
	switch len(proofs) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", invalidDPoPProof("exactly one DPoP proof is allowed")
	}
	// No access token exists yet, so no ath is expected; the key's thumbprint is the cnf.jkt
	// the issued token is bound to.
	now := s.p.now()
	p, err := s.p.proofs.Check(proofs[0], http.MethodPost, s.p.cfg.Issuer+PathToken, now)
	if err == nil {
		err = s.p.replay.Add(p.JKT, p.JTI, now)
	}
	if err != nil {
		return "", invalidDPoPProof(err.Error())
	}
	return p.JKT, nil
}

// invalidDPoPProof is RFC 9449 §5's 400 invalid_dpop_proof.
func invalidDPoPProof(desc string) error {
	return &oidc.Error{ErrorType: "invalid_dpop_proof", Description: desc}
}

// grant is what every token request carries: whose token, for which scopes.
type grant interface {
	GetSubject() string
	GetScopes() []string
}

// tokenResponse mints the access token, a (rotated) refresh token when the client has the
// refresh_token grant and a user is involved, and an ID token when openid was granted.
//
// jkt, when the request carried a valid DPoP proof, binds the access token to that key
// (cnf.jkt, token_type DPoP: RFC 9449 §5, §6).
func (p *Provider) tokenResponse(ctx context.Context, g grant, cl *client, currentRefresh, code, jkt string) (*oidc.AccessTokenResponse, error) {
	var refresh string
	if _, isCC := g.(*clientCredentialsRequest); !isCC && cl.hasGrant(GrantRefreshToken) {
		var err error
		var req op.TokenRequest
		switch v := g.(type) {
		case *authRequest:
			req = v
		case *refreshRequest:
			req = v
		}
		bind := ""
		if cl.AuthMethod() == oidc.AuthMethodNone {
			bind = jkt // a public client's refresh token is bound to its DPoP key (RFC 9449 §5)
		}
		if refresh, err = p.store.issueRefresh(req, currentRefresh, bind); err != nil {
			return nil, oidc.ErrInvalidGrant().WithDescription("invalid refresh token").WithParent(err)
		}
	}
	scopes := g.GetScopes()
	apiScopes := slices.DeleteFunc(slices.Clone(scopes), reservedScope)
	jti, iat, exp := p.store.newAccessToken()
	an := authnOf(g)
	var at string
	var err error
	if cl.opaque {
		at, err = op.CreateBearerToken(jti, g.GetSubject(), p.crypto)
		p.store.recordOpaque(jti, &opaqueRecord{subject: g.GetSubject(), clientID: cl.id, scopes: apiScopes, issuedAt: iat, expires: exp, jkt: jkt, x5t: certificateThumbprint(ctx), authn: an})
	} else {
		at, err = p.signAccessToken(accessTokenClaims{
			Issuer:   p.cfg.Issuer,
			Subject:  g.GetSubject(),
			Audience: p.cfg.API.Audience,
			ClientID: cl.id,
			Scope:    strings.Join(apiScopes, " "),
			JWTID:    jti,
			IssuedAt: iat.Unix(),
			Expiry:   exp.Unix(),
			Cnf:      confirmation(jkt, certificateThumbprint(ctx)),
			ACR:      an.acr,
			AMR:      an.amr,
			AuthTime: unixOrZero(an.authTime),
		})
	}
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	tokenType := oidc.BearerToken
	if jkt != "" {
		tokenType = TokenTypeDPoP
	}
	resp := &oidc.AccessTokenResponse{
		AccessToken:  at,
		TokenType:    tokenType,
		RefreshToken: refresh,
		ExpiresIn:    uint64(exp.Sub(iat) / time.Second),
		Scope:        scopes,
	}
	if idReq, ok := g.(op.IDTokenRequest); ok && slices.Contains(scopes, oidc.ScopeOpenID) {
		idt, err := op.CreateIDToken(op.ContextWithIssuer(ctx, p.cfg.Issuer), p.cfg.Issuer, idReq, cl.IDTokenLifetime(), at, code, p.store, cl)
		if err != nil {
			return nil, oidc.ErrServerError().WithParent(err)
		}
		resp.IDToken = idt
	}
	return resp, nil
}

// accessTokenClaims are the claims RFC 9068 §2.2 requires of a JWT access token, and for a
// user's token the authentication claims of §2.2.1 (acr, amr, auth_time).
type accessTokenClaims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	Audience string `json:"aud"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	JWTID    string `json:"jti"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
	// Cnf binds the token to the client's DPoP key (RFC 9449 §6.1), when it sent a proof.
	Cnf *cnfClaim `json:"cnf,omitempty"`
	// ACR, AMR and AuthTime state the user's authentication (RFC 9068 §2.2.1), which
	// resource servers may require more of (RFC 9470); none for client credentials.
	ACR      string   `json:"acr,omitempty"`
	AMR      []string `json:"amr,omitempty"`
	AuthTime int64    `json:"auth_time,omitempty"`
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

type cnfClaim struct {
	JKT string `json:"jkt,omitempty"`
	// X5T is the client certificate's thumbprint (RFC 8705 §3.1), when the token request came
	// over TLS with a verified client certificate.
	X5T string `json:"x5t#S256,omitempty"`
}

func confirmation(jkt, x5t string) *cnfClaim {
	if jkt == "" && x5t == "" {
		return nil
	}
	return &cnfClaim{JKT: jkt, X5T: x5t}
}

// TokenTypeDPoP is the token_type of a DPoP-bound access token (RFC 9449 §5).
const TokenTypeDPoP = "DPoP"

// AccessTokenType is the JOSE `typ` of access tokens (RFC 9068 §2.1); ID tokens carry "JWT",
// so neither can be passed off as the other.
const AccessTokenType = "at+jwt"

func (p *Provider) signAccessToken(c accessTokenClaims) (string, error) {
	k := p.keys.signing()
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: k.alg, Key: &jose.JSONWebKey{Key: k.private, KeyID: k.id}},
		(&jose.SignerOptions{}).WithType(AccessTokenType),
	)
	if err != nil {
		return "", fmt.Errorf("access token signer: %w", err)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign access token: %w", err)
	}
	return jws.CompactSerialize()
}

var errNoUser = errors.New("no such user or wrong password")
