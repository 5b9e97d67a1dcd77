package policy

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/open-policy-agent/opa/v1/bundle"
)

// Signing is the public key that signs the policy bundle, as the wiring read it from the
// config (policy.signing, policy.bundle.signing) or from a command's --verification-key.
type Signing struct {
	// PublicKey is the PEM public key (RSA: RS256; EC: ES256/384/512 by curve; Ed25519).
	PublicKey []byte
	// KeyID names the key; it verifies whatever kid the signature names, as OPA does with a
	// configured key id.
	KeyID string
	// Scope must equal the signature's "scope" claim ("" : the signature carries none).
	Scope string
	// Field and File name the key in errors: the setting it came from
	// (policy.signing.public_key_file, --verification-key) and the file it was read from.
	Field, File string
}

// Verification turns a signing key into OPA's bundle verification config; nil signing is
// nil (no verification: a signed bundle is then refused, see Load). OPA's bundle reader does
// the verifying: the signature JWT in .signatures.json and every file's hash.
//
// The signature algorithm comes from the key, never from the bundle: RSA keys verify RS256
// (`opa build --signing-key`'s default), EC keys ES256/ES384/ES512 by curve, Ed25519 keys
// EdDSA. Letting the signed artifact name its algorithm is how alg confusion starts.
func Verification(s *Signing) (*bundle.VerificationConfig, error) {
	if s == nil {
		return nil, nil
	}
	alg, err := keyAlgorithm(s.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", s.Field, s.File, err)
	}
	key := &bundle.KeyConfig{Key: string(s.PublicKey), Algorithm: alg, Scope: s.Scope}
	return bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{s.KeyID: key}, s.KeyID, s.Scope, nil), nil
}

func keyAlgorithm(raw []byte) (string, error) {
	block, _ := pem.Decode(raw)
	if block == nil {
		return "", errors.New("not a PEM-encoded public key")
	}
	var (
		pub any
		err error
	)
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return "", fmt.Errorf("PEM block %q is not a public key", block.Type)
	}
	if err != nil {
		return "", err
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("RSA key of %d bits is too small (at least 2048)", k.N.BitLen())
		}
		return "RS256", nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256", nil
		case elliptic.P384():
			return "ES384", nil
		case elliptic.P521():
			return "ES512", nil
		}
	case ed25519.PublicKey:
		return "EdDSA", nil
	}
	return "", errors.New("unsupported key type (RSA, EC P-256/384/521 or Ed25519)")
}

// signed reports whether the bundle at path carries a .signatures.json (a directory, or a
// bundle tarball read with OPA's own tarball loader).
func signed(path string) bool {
	info, err := os.Stat(path)
	if err != nil {
		return false
	}
	if info.IsDir() {
		_, err := os.Stat(filepath.Join(path, ".signatures.json"))
		return err == nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	l := bundle.NewTarballLoader(f)
	for {
		d, err := l.NextFile()
		if err != nil {
			return false // io.EOF, or not a tarball
		}
		name := filepath.Base(d.Path())
		d.Close()
		if name == ".signatures.json" {
			return true
		}
	}
}
