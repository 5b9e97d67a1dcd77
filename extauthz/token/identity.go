// Package token verifies bearer access tokens (JWS-signed JWTs) against the configured
// issuers' keys and caches what it verified.
package token

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Identity is what a verified token says: immutable once built, shared by every Check that
// presents the same token while it is cached.
type Identity struct {
	// Source is how the token was checked: SourceJWT or SourceIntrospection.
	Source   string
	Issuer   string // the configured issuer name
	Iss      string
	Subject  string
	ClientID string
	JTI      string
	KID      string
	Audience []string
	Scopes   []string
	// ScopeString is Scopes joined with spaces, ready for the upstream header.
	ScopeString string
	ExpiresAt   time.Time
	IssuedAt    time.Time // zero when the token has no iat
	// JKT is the token's cnf.jkt: it is DPoP-bound to the key of that thumbprint (RFC 9449).
	JKT string
	// X5T is the token's cnf["x5t#S256"]: it is bound to the client certificate of that
	// thumbprint (RFC 8705).
	X5T string
	// RequireBinding is the issuer's require_binding: its tokens must be sender-constrained.
	RequireBinding bool
	// ACR, AMR and AuthTime are the user's authentication as the token states it (acr, amr,
	// auth_time; RFC 9068 §2.2.1): the context class, the methods, and when (zero: no
	// auth_time). Routes and policies may require a stronger or fresher one (RFC 9470).
	ACR      string
	AMR      []string
	AuthTime time.Time
	// Leeway is the issuer's clock leeway, allowed on auth_time against a max_age too.
	Leeway time.Duration

	raw        []byte // the claims set as JSON
	claimsOnce sync.Once
	claims     map[string]any

	// memo holds a later stage's per-token derivation (the policy input's token document), so
	// it is built once per token rather than once per request.
	memo atomic.Pointer[any]
}

// Binding is how the token is sender-constrained: "dpop" (cnf.jkt), "mtls" (cnf x5t#S256)
// or "none". A token reaching the policy has passed the binding's check.
func (id *Identity) Binding() string {
	switch {
	case id.JKT != "":
		return "dpop"
	case id.X5T != "":
		return "mtls"
	}
	return "none"
}

// Token sources (input.token.source).
const (
	SourceJWT           = "jwt"
	SourceIntrospection = "introspection"
)

// Memo returns the value stored by SetMemo, or nil.
func (id *Identity) Memo() any {
	if p := id.memo.Load(); p != nil {
		return *p
	}
	return nil
}

// SetMemo stores a derived value; racing writers store equal values, so last wins.
func (id *Identity) SetMemo(v any) { id.memo.Store(&v) }

func newIdentity(issuerName string, c *accessClaims, kid string) *Identity {
	id := &Identity{Source: SourceJWT, Issuer: issuerName, KID: kid, Iss: c.iss, Subject: c.sub, JTI: c.jti, ClientID: c.clientID,
		Audience: c.aud, Scopes: c.scopes, JKT: c.jkt, X5T: c.x5t, raw: c.raw}
	if id.Scopes == nil {
		id.Scopes = []string{}
	}
	id.ScopeString = strings.Join(id.Scopes, " ")
	if c.exp != nil {
		id.ExpiresAt = c.exp.Time
	}
	if c.iat != nil {
		id.IssuedAt = c.iat.Time
	}
	id.ACR, id.AMR = c.acr, c.amr
	if c.authTime != nil {
		id.AuthTime = c.authTime.Time
	}
	return id
}

// Claims is the token's whole claims set. It is decoded from the payload on first use: only
// a policy that reads input.token.claims needs it, and most tokens never get there.
func (id *Identity) Claims() map[string]any {
	id.claimsOnce.Do(func() {
		if id.claims != nil || id.raw == nil {
			return
		}
		m := map[string]any{}
		if err := json.Unmarshal(id.raw, &m); err == nil { // checked valid when the token was
			id.claims = m
		}
	})
	return id.claims
}

// IdentityFromClaims builds an identity from claims that were verified elsewhere (or, in
// `scopegate check`, deliberately not at all), read by the same rules as a token's.
func IdentityFromClaims(issuerName string, claims map[string]any, scopeClaims, clientIDClaims []string) (*Identity, error) {
	raw, err := json.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	c := &accessClaims{names: &claimNames{scope: scopeClaims, clientID: clientIDClaims}}
	if err := c.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	if c.badScope != "" {
		return nil, fmt.Errorf("claims: %w", scopeClaimError(c.badScope))
	}
	if c.badCnf {
		return nil, fmt.Errorf("claims: %w", errBadCnf)
	}
	if c.badAuthn != nil {
		return nil, fmt.Errorf("claims: %w", c.badAuthn)
	}
	id := newIdentity(issuerName, c, "")
	id.claims = claims
	return id, nil
}
