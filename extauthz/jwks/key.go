// Package jwks keeps each issuer's JSON Web Key Set: fetched (directly or through OIDC
// discovery) and refreshed periodically and on unknown kids, or read from a file, parsed with
// jwkset, and published as an immutable snapshot that the Check path reads without locks.
package jwks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/MicahParks/jwkset"
)

// Key is one verification key of an issuer.
type Key struct {
	KID string
	// Alg is the JWK's "alg", empty when the JWK does not restrict it.
	Alg    string
	Public any // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	// Fingerprint identifies the key material, so a cached verification can tell its key is
	// still published (same kid and same key) after a refresh.
	Fingerprint [32]byte
}

// Set is an immutable snapshot of an issuer's usable keys.
type Set struct {
	byKID map[string]*Key
	all   []*Key
}

// Len is the number of usable keys.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.all)
}

// Get returns the key with this kid, or nil.
func (s *Set) Get(kid string) *Key {
	if s == nil {
		return nil
	}
	return s.byKID[kid]
}

// All returns every usable key (for tokens that name no kid).
func (s *Set) All() []*Key {
	if s == nil {
		return nil
	}
	return s.all
}

// KIDs lists the key IDs, for logs and status.
func (s *Set) KIDs() []string {
	out := make([]string, 0, s.Len())
	for _, k := range s.All() {
		out = append(out, k.KID)
	}
	return out
}

// Same reports whether o holds the same keys (kid and key material) as s.
func (s *Set) Same(o *Set) bool {
	if s.Len() != o.Len() {
		return false
	}
	for _, k := range s.All() {
		if !o.Still(k.KID, k.Fingerprint) {
			return false
		}
	}
	return true
}

// Still reports whether a key with this kid and fingerprint is still in the set.
func (s *Set) Still(kid string, fp [32]byte) bool {
	k := s.Get(kid)
	return k != nil && k.Fingerprint == fp
}

// ErrKeyAlgMismatch is returned when a key can't verify the token's algorithm.
var ErrKeyAlgMismatch = errors.New("key does not match the token's algorithm")

// Allows checks that this key may verify a token signed with alg: the JWK's own alg (if any)
// must equal it and the key type (and curve, and size) must be the one alg implies, so an
// RS256 token can't be verified against an EC key or an HMAC secret.
func (k *Key) Allows(alg string) error {
	if k.Alg != "" && k.Alg != alg {
		return fmt.Errorf("%w: key %q is for %s, token is %s", ErrKeyAlgMismatch, k.KID, k.Alg, alg)
	}
	ok := false
	switch pub := k.Public.(type) {
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			ok = pub.N.BitLen() >= 2048
		}
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			ok = pub.Curve == elliptic.P256()
		case "ES384":
			ok = pub.Curve == elliptic.P384()
		case "ES512":
			ok = pub.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		ok = alg == "EdDSA"
	}
	if !ok {
		return fmt.Errorf("%w: key %q (%T) can't verify %s", ErrKeyAlgMismatch, k.KID, k.Public, alg)
	}
	return nil
}

// newSet builds a snapshot from jwkset keys, keeping only public signature keys of supported
// types: symmetric ("oct") keys and encryption keys are dropped, never used.
func newSet(jwks []jwkset.JWK) (*Set, error) {
	s := &Set{byKID: make(map[string]*Key, len(jwks))}
	for _, j := range jwks {
		m := j.Marshal()
		if m.KTY == jwkset.KtyOct || (m.USE != "" && m.USE != jwkset.UseSig) {
			continue
		}
		pub := j.Key()
		if p, ok := pub.(interface{ Public() crypto.PublicKey }); ok {
			pub = p.Public()
		}
		switch pub.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			continue
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			continue
		}
		k := &Key{KID: m.KID, Alg: m.ALG.String(), Public: pub, Fingerprint: sha256.Sum256(der)}
		if _, dup := s.byKID[k.KID]; dup {
			return nil, fmt.Errorf("duplicate kid %q", k.KID)
		}
		s.byKID[k.KID] = k
		s.all = append(s.all, k)
	}
	if len(s.all) == 0 {
		return nil, errors.New("no usable signature keys in the key set")
	}
	return s, nil
}
