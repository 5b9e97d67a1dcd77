package oauth

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"

	jose "github.com/go-jose/go-jose/v4"
)

var b64 = base64.RawURLEncoding

// Thumbprint is the RFC 7638 thumbprint of key's public part (base64url SHA-256): the value
// of a DPoP-bound token's cnf.jkt.
func Thumbprint(key crypto.Signer) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return b64.EncodeToString(tp), nil
}

// CertificateThumbprint is the x5t#S256 of a certificate (RFC 8705 §3.1): base64url
// SHA-256 of its DER: the value of a certificate-bound token's cnf["x5t#S256"].
func CertificateThumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return b64.EncodeToString(sum[:])
}

// TokenHash is a DPoP proof's ath for an access token (RFC 9449 §4.2): base64url SHA-256.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return b64.EncodeToString(sum[:])
}
