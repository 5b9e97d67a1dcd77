package translate

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/scopegate/scopegate/internal/spiffe"
)

// ReadFileFunc reads a certificate or key file; os.ReadFile in production.
type ReadFileFunc func(path string) ([]byte, error)

// fileCache reads each file once per Build, so one certificate shared by listeners is read
// once and every listener sees the same bytes.
type fileCache struct {
	read  ReadFileFunc
	files map[string][]byte
}

func newFileCache(read ReadFileFunc) *fileCache {
	return &fileCache{read: read, files: map[string][]byte{}}
}

func (c *fileCache) get(path string) ([]byte, error) {
	if b, ok := c.files[path]; ok {
		return b, nil
	}
	b, err := c.read(path)
	if err != nil {
		return nil, err
	}
	c.files[path] = b
	return b, nil
}

// certificateSecret reads a certificate chain and key into the secret called name, checked
// first (parses, key matches, not expired), so Envoy is never handed a certificate it would
// reject; a rotated file changes only this secret's version.
func certificateSecret(name, certFile, keyFile string, files *fileCache) (Secret, error) {
	cert, err := files.get(certFile)
	if err != nil {
		return Secret{}, fmt.Errorf("cert_file: %w", err)
	}
	key, err := files.get(keyFile)
	if err != nil {
		return Secret{}, fmt.Errorf("key_file: %w", err)
	}
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return Secret{}, fmt.Errorf("%s and %s: %w", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return Secret{}, fmt.Errorf("cert_file %s: %w", certFile, err)
	}
	if now := time.Now(); now.After(leaf.NotAfter) {
		return Secret{}, fmt.Errorf("cert_file %s: certificate expired at %s", certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return Secret{Name: name, Certificate: &Certificate{Chain: cert, Key: key}}, nil
}

// caSecret reads a PEM CA bundle into the secret called name; a file without a certificate
// in it is refused.
func caSecret(name, caFile string, files *fileCache) (Secret, error) {
	ca, err := files.get(caFile)
	if err != nil {
		return Secret{}, fmt.Errorf("ca_file: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(ca) {
		return Secret{}, fmt.Errorf("ca_file %s: no PEM certificate in it", caFile)
	}
	return Secret{Name: name, TrustedCA: ca}, nil
}

// notAFleetIdentity refuses a client certificate for authz that carries a fleet's xDS
// identity (a URI SAN spiffe://<any trust domain>/fleet/...). It is pushed by SDS, key and
// all, to the Envoys of every fleet it serves: any of them could present it to scopegate xds
// and be served that fleet's routes and listener keys. at names the field (authz.tls.cert_file).
func notAFleetIdentity(certFile, at string, files *fileCache) error {
	pemBytes, err := files.get(certFile)
	if err != nil {
		return fmt.Errorf("%s: %w", at, err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("%s %s: no PEM certificate in it", at, certFile)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("%s %s: %w", at, certFile, err)
	}
	for _, u := range leaf.URIs {
		if spiffe.IsFleetID(u) {
			return fmt.Errorf("%s %s: the certificate carries the URI SAN %s, an Envoy fleet's identity towards scopegate xds; "+
				"its key goes to every Envoy it is pushed to, and any of them could then connect to xds as that fleet. "+
				"Give authz its own client certificate (for example with the URI SAN spiffe://<trust_domain>/authz-client, "+
				"`scopegate demo-cert` writes authz-client.crt) and list it in authz's tls.client_uri_sans", at, certFile, u)
		}
	}
	return nil
}
