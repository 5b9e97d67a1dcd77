// Package democert makes the demo's self-signed TLS certificate at start-up, so no private key
// is ever committed: `scopegate demo-cert --out DIR` writes DIR/tls.crt and DIR/tls.key.
package democert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names written into the output directory (compose/xds.yaml reads /certs/tls.crt and .key).
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
)

// Options say what to generate.
type Options struct {
	Hosts    []string      // DNS names and IP addresses for the subjectAltName
	Validity time.Duration // how long the certificate is valid
	Now      time.Time     // zero: time.Now()
}

// Write generates an ECDSA P-256 key and a self-signed certificate for o.Hosts and writes them to
// dir (key 0600, certificate 0644), replacing earlier ones atomically.
func Write(dir string, o Options) (certPath, keyPath string, err error) {
	certPEM, keyPEM, err := Generate(o)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("demo cert: %w", err)
	}
	certPath, keyPath = filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	if err := writeAtomic(keyPath, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeAtomic(certPath, certPEM, 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// Generate returns the PEM certificate and PKCS#8 PEM key.
func Generate(o Options) (certPEM, keyPEM []byte, err error) {
	if len(o.Hosts) == 0 {
		return nil, nil, errors.New("demo cert: at least one host is required")
	}
	if o.Validity <= 0 {
		return nil, nil, errors.New("demo cert: validity must be positive")
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("demo cert: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("demo cert: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"scopegate demo (NOT FOR PRODUCTION)"}, CommonName: o.Hosts[0]},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(o.Validity),
		// Self-signed and its own trust anchor: `curl --cacert tls.crt` trusts it directly.
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range o.Hosts {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
			return nil, nil, errors.New("demo cert: empty host name")
		case net.ParseIP(h) != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(h))
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("demo cert: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("demo cert: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("demo cert: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("demo cert %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("demo cert %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("demo cert %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("demo cert %s: %w", path, err)
	}
	return nil
}
