package oauth

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

// ProofClaims are what a client puts in a DPoP proof (RFC 9449 §4.2).
type ProofClaims struct {
	Method      string // htm
	URI         string // htu: the request URI without query and fragment
	AccessToken string // hashed into ath ("" for a proof at the token endpoint)
	Nonce       string // the server's DPoP-Nonce, if it asked for one
	IssuedAt    time.Time
	JTI         string // "" for a random one
}

// SignProof makes a DPoP proof with key (an *ecdsa.PrivateKey, ed25519.PrivateKey or
// *rsa.PrivateKey) for alg: the client side of ProofChecker, used by `scopegate token` and
// the tests of the gate and the demo IdP.
func SignProof(key crypto.Signer, alg string, c ProofClaims) (string, error) {
	method := jwt.GetSigningMethod(alg)
	if method == nil || !Asymmetric(alg) {
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
