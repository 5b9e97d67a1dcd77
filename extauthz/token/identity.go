// Package token verifies bearer access tokens (JWS-signed JWTs) against the configured
// issuers' keys and caches what it verified.
package token

import (
	"strings"
	"sync/atomic"
	"time"
)

// Identity is what a verified token says: immutable once built, shared by every Check that
// presents the same token while it is cached.
type Identity struct {
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
	Claims      map[string]any

	// memo holds a later stage's per-token derivation (the policy input's token document), so
	// it is built once per token rather than once per request.
	memo atomic.Pointer[any]
}

// Memo returns the value stored by SetMemo, or nil.
func (id *Identity) Memo() any {
	if p := id.memo.Load(); p != nil {
		return *p
	}
	return nil
}

// SetMemo stores a derived value; racing writers store equal values, so last wins.
func (id *Identity) SetMemo(v any) { id.memo.Store(&v) }

func newIdentity(issuerName string, claims map[string]any, scopeClaims, clientIDClaims []string, kid string) *Identity {
	id := &Identity{Issuer: issuerName, KID: kid, Claims: claims}
	id.Iss, _ = claims["iss"].(string)
	id.Subject, _ = claims["sub"].(string)
	id.JTI, _ = claims["jti"].(string)
	for _, c := range clientIDClaims {
		if v, ok := claims[c].(string); ok && v != "" {
			id.ClientID = v
			break
		}
	}
	switch aud := claims["aud"].(type) {
	case string:
		id.Audience = []string{aud}
	case []any:
		for _, a := range aud {
			if s, ok := a.(string); ok {
				id.Audience = append(id.Audience, s)
			}
		}
	}
	seen := map[string]bool{}
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			id.Scopes = append(id.Scopes, s)
		}
	}
	for _, c := range scopeClaims {
		switch v := claims[c].(type) {
		case string:
			for _, s := range strings.Fields(v) {
				add(s)
			}
		case []any:
			for _, s := range v {
				if str, ok := s.(string); ok {
					add(str)
				}
			}
		}
	}
	if id.Scopes == nil {
		id.Scopes = []string{}
	}
	id.ScopeString = strings.Join(id.Scopes, " ")
	id.ExpiresAt = numericDate(claims["exp"])
	id.IssuedAt = numericDate(claims["iat"])
	return id
}

func numericDate(v any) time.Time {
	f, ok := v.(float64)
	if !ok {
		return time.Time{}
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9))
}

// IdentityFromClaims builds an identity from claims that were verified elsewhere (or, in
// `scopegate check`, deliberately not at all).
func IdentityFromClaims(issuerName string, claims map[string]any, scopeClaims, clientIDClaims []string) *Identity {
	return newIdentity(issuerName, claims, scopeClaims, clientIDClaims, "")
}
