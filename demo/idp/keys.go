package idp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// retentionMargin is added to the longest token lifetime before a retired public key leaves the
// JWKS: verifiers accept a little clock skew (leeway) past `exp`.
const retentionMargin = time.Minute

// signingKey is one key pair. It is both an op.SigningKey (private half) and, through publicKey,
// an op.Key (the public half published in the JWKS).
type signingKey struct {
	id        string
	alg       jose.SignatureAlgorithm
	private   crypto.Signer
	createdAt time.Time
	// retiredAt is zero while the key signs; publishUntil is when a retired key leaves the JWKS.
	retiredAt    time.Time
	publishUntil time.Time
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *signingKey) Key() any                                    { return k.private }
func (k *signingKey) ID() string                                  { return k.id }

// publicKey is the JWKS view of a signingKey.
type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return p.k.alg }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return p.k.private.Public() }

// KeyInfo describes a key for the admin API.
type KeyInfo struct {
	ID           string     `json:"kid"`
	Algorithm    string     `json:"alg"`
	Status       string     `json:"status"` // "active" or "retired"
	CreatedAt    time.Time  `json:"created_at"`
	RetiredAt    *time.Time `json:"retired_at,omitempty"`
	PublishUntil *time.Time `json:"published_until,omitempty"`
}

// keyRing holds the active signing key and the retired keys still published in the JWKS.
type keyRing struct {
	alg       jose.SignatureAlgorithm
	rsaBits   int
	retention time.Duration // how long a retired key stays published
	file      string        // "" for memory storage
	now       func() time.Time

	mu      sync.RWMutex
	active  *signingKey
	retired []*signingKey // oldest first
}

func newKeyRing(cfg KeysCfg, maxTokenLifetime time.Duration, now func() time.Time) (*keyRing, error) {
	r := &keyRing{
		alg:       jose.SignatureAlgorithm(cfg.Algorithm),
		rsaBits:   cfg.RSABits,
		retention: maxTokenLifetime + retentionMargin,
		now:       now,
	}
	if cfg.Storage == "file" {
		r.file = cfg.File
		loaded, err := r.load()
		if err != nil {
			return nil, err
		}
		if loaded {
			return r, nil
		}
	}
	k, err := r.generate()
	if err != nil {
		return nil, err
	}
	r.active = k
	if err := r.save(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *keyRing) generate() (*signingKey, error) {
	var priv crypto.Signer
	var err error
	switch r.alg {
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, r.rsaBits)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("keys.algorithm %q not supported", r.alg)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", r.alg, err)
	}
	kid, err := thumbprint(priv.Public())
	if err != nil {
		return nil, err
	}
	return &signingKey{id: kid, alg: r.alg, private: priv, createdAt: r.now()}, nil
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url): a key ID derived from the key.
func thumbprint(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// signing returns the active key.
func (r *keyRing) signing() *signingKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.active
}

// published returns the active key and the retired keys whose tokens may still be valid.
func (r *keyRing) published() []op.Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruneLocked()
	keys := []op.Key{publicKey{r.active}}
	for i := len(r.retired) - 1; i >= 0; i-- {
		keys = append(keys, publicKey{r.retired[i]})
	}
	return keys
}

// rotate makes a new active key; the old one stays published until every token it signed expired.
func (r *keyRing) rotate() (KeyInfo, error) {
	k, err := r.generate()
	if err != nil {
		return KeyInfo{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	old := r.active
	old.retiredAt = now
	old.publishUntil = now.Add(r.retention)
	r.retired = append(r.retired, old)
	r.active = k
	r.pruneLocked()
	if err := r.saveLocked(); err != nil {
		return KeyInfo{}, err
	}
	return info(k), nil
}

// list describes the published keys, active first.
func (r *keyRing) list() []KeyInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruneLocked()
	out := []KeyInfo{info(r.active)}
	for i := len(r.retired) - 1; i >= 0; i-- {
		out = append(out, info(r.retired[i]))
	}
	return out
}

func info(k *signingKey) KeyInfo {
	ki := KeyInfo{ID: k.id, Algorithm: string(k.alg), Status: "active", CreatedAt: k.createdAt}
	if !k.retiredAt.IsZero() {
		ra, pu := k.retiredAt, k.publishUntil
		ki.Status, ki.RetiredAt, ki.PublishUntil = "retired", &ra, &pu
	}
	return ki
}

func (r *keyRing) pruneLocked() {
	now := r.now()
	kept := r.retired[:0]
	for _, k := range r.retired {
		if now.Before(k.publishUntil) {
			kept = append(kept, k)
		}
	}
	clear(r.retired[len(kept):])
	r.retired = kept
}

// keyFile is the on-disk form of storage "file": private JWKs with their lifecycle times.
type keyFile struct {
	Keys []storedKey `json:"keys"`
}

type storedKey struct {
	JWK          jose.JSONWebKey `json:"jwk"`
	CreatedAt    time.Time       `json:"created_at"`
	RetiredAt    *time.Time      `json:"retired_at,omitempty"`
	PublishUntil *time.Time      `json:"published_until,omitempty"`
}

func (r *keyRing) load() (bool, error) {
	data, err := os.ReadFile(r.file)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("keys.file: %w", err)
	}
	var f keyFile
	if err := json.Unmarshal(data, &f); err != nil {
		return false, fmt.Errorf("keys.file %s: %w", r.file, err)
	}
	for i, sk := range f.Keys {
		priv, ok := sk.JWK.Key.(crypto.Signer)
		if !ok || sk.JWK.IsPublic() {
			return false, fmt.Errorf("keys.file %s: keys[%d] is not a private key", r.file, i)
		}
		if sk.JWK.Algorithm != string(r.alg) {
			return false, fmt.Errorf("keys.file %s: keys[%d] is %s, keys.algorithm is %s", r.file, i, sk.JWK.Algorithm, r.alg)
		}
		k := &signingKey{id: sk.JWK.KeyID, alg: r.alg, private: priv, createdAt: sk.CreatedAt}
		if sk.RetiredAt == nil {
			if r.active != nil {
				return false, fmt.Errorf("keys.file %s: more than one active key", r.file)
			}
			r.active = k
			continue
		}
		if sk.PublishUntil == nil {
			return false, fmt.Errorf("keys.file %s: keys[%d] is retired without published_until", r.file, i)
		}
		k.retiredAt, k.publishUntil = *sk.RetiredAt, *sk.PublishUntil
		r.retired = append(r.retired, k)
	}
	if r.active == nil {
		return false, fmt.Errorf("keys.file %s: no active key", r.file)
	}
	r.pruneLocked()
	return true, nil
}

func (r *keyRing) save() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.saveLocked()
}

// saveLocked writes the key file atomically with 0600 permissions (storage "file" only).
func (r *keyRing) saveLocked() error {
	if r.file == "" {
		return nil
	}
	var f keyFile
	for _, k := range append(append([]*signingKey{}, r.retired...), r.active) {
		sk := storedKey{
			JWK:       jose.JSONWebKey{Key: k.private, KeyID: k.id, Algorithm: string(k.alg), Use: "sig"},
			CreatedAt: k.createdAt,
		}
		if !k.retiredAt.IsZero() {
			ra, pu := k.retiredAt, k.publishUntil
			sk.RetiredAt, sk.PublishUntil = &ra, &pu
		}
		f.Keys = append(f.Keys, sk)
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("keys.file: %w", err)
	}
	dir := filepath.Dir(r.file)
	tmp, err := os.CreateTemp(dir, ".keys-*.json")
	if err != nil {
		return fmt.Errorf("keys.file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("keys.file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("keys.file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keys.file: %w", err)
	}
	if err := os.Rename(tmp.Name(), r.file); err != nil {
		return fmt.Errorf("keys.file: %w", err)
	}
	return nil
}
