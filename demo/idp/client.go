package idp

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/url"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// client is a registered client as the OP library sees it (op.Client).
type client struct {
	id           string
	secretHash   [32]byte // SHA-256 of the secret, compared in constant time
	public       bool
	scopes       []string
	grantTypes   []oidc.GrantType
	redirectURIs []string
	loginPath    string
	idTokenLife  time.Duration
	opaque       bool // opaque access tokens (introspection) instead of JWTs
}

func newClient(c Client, loginPath string, idTokenLife time.Duration) *client {
	cl := &client{
		id:           c.ID,
		public:       c.Public,
		scopes:       slices.Clone(c.Scopes),
		redirectURIs: slices.Clone(c.RedirectURIs),
		loginPath:    loginPath,
		idTokenLife:  idTokenLife,
		opaque:       c.AccessTokenFormat == TokenFormatOpaque,
	}
	if !c.Public {
		cl.secretHash = sha256.Sum256([]byte(c.Secret))
	}
	for _, g := range c.GrantTypes {
		cl.grantTypes = append(cl.grantTypes, oidc.GrantType(g))
	}
	return cl
}

// secretMatches compares in constant time (hashing first makes the lengths equal).
func (c *client) secretMatches(secret string) bool {
	if c.public {
		return false
	}
	h := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(h[:], c.secretHash[:]) == 1
}

func (c *client) hasGrant(g string) bool { return slices.Contains(c.grantTypes, oidc.GrantType(g)) }

func (c *client) GetID() string                    { return c.id }
func (c *client) RedirectURIs() []string           { return c.redirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return nil }

// ApplicationType: a public client is a native app, whose loopback redirect URIs match on any
// port (RFC 8252 §7.3); the OP library applies that rule to native clients.
func (c *client) ApplicationType() op.ApplicationType {
	if c.public {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}

func (c *client) AuthMethod() oidc.AuthMethod {
	if c.public {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}

func (c *client) ResponseTypes() []oidc.ResponseType {
	if c.hasGrant(GrantAuthorizationCode) {
		return []oidc.ResponseType{oidc.ResponseTypeCode}
	}
	return nil
}

func (c *client) GrantTypes() []oidc.GrantType { return c.grantTypes }

func (c *client) LoginURL(authRequestID string) string {
	return c.loginPath + "?" + url.Values{"authRequestID": {authRequestID}}.Encode()
}

func (c *client) AccessTokenType() op.AccessTokenType {
	if c.opaque {
		return op.AccessTokenTypeBearer
	}
	return op.AccessTokenTypeJWT
}
func (c *client) IDTokenLifetime() time.Duration { return c.idTokenLife }
func (c *client) DevMode() bool                  { return false }

func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (c *client) IsScopeAllowed(scope string) bool     { return slices.Contains(c.scopes, scope) }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *client) ClockSkew() time.Duration             { return 0 }
