package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// ProofClaims are what a client puts in a proof.
type ProofClaims struct {
	Method      string // htm
	URI         string // htu: the request URI without query and fragment
	AccessToken string // hashed into ath ("" for a proof at the token endpoint)
	Nonce       string // the server's DPoP-Nonce, if it asked for one
	IssuedAt    time.Time
	JTI         string // "" for a random one
}

// Sign makes a proof with key (an *ecdsa.PrivateKey, ed25519.PrivateKey or *rsa.PrivateKey)
// for alg: the client side of Verify, used by `scopegate token proof` and the demo IdP's
// tests.
func Sign(key crypto.Signer, alg string, c ProofClaims) (string, error) {
	method := jwt.GetSigningMethod(alg)
	if method == nil || !Allowed(alg) {
		return "", fmt.Errorf("DPoP algorithm %q is not supported", alg)
	}
	switch key.(type) {
	case *ecdsa.PrivateKey, ed25519.PrivateKey, *rsa.PrivateKey:
	default:
		return "", fmt.Errorf("DPoP key of type %T is not supported", key)
	}
	jwk, err := json.Marshal(jose.JSONWebKey{Key: key.Public()})
	if err != nil {
		return "", err
	}
	if c.JTI == "" {
		c.JTI = rand.Text()
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = time.Now()
	}
	claims := jwt.MapClaims{"jti": c.JTI, "htm": c.Method, "htu": c.URI, "iat": c.IssuedAt.Unix()}
	if c.AccessToken != "" {
		claims["ath"] = TokenHash(c.AccessToken)
	}
	if c.Nonce != "" {
		claims["nonce"] = c.Nonce
	}
	t := jwt.NewWithClaims(method, claims)
	t.Header["typ"] = "dpop+jwt"
	t.Header["jwk"] = json.RawMessage(jwk)
	return t.SignedString(key)
}

// Thumbprint is the RFC 7638 thumbprint of key's public part (base64url SHA-256): the value
// of a bound token's cnf.jkt.
func Thumbprint(key crypto.Signer) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return b64.EncodeToString(tp), nil
}
