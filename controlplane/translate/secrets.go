package translate

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/scopegate/scopegate/controlplane/config"
)

// SecretName is the SDS secret holding a listener's certificate.
func SecretName(listener string) string { return listener + ".tls" }

// listenerSecret reads the listener's certificate chain and key and packs them inline in an
// SDS secret. The pair is checked first (parses, key matches, not expired), so Envoy is never
// handed a certificate it would reject; a rotated file changes only this secret's version.
func listenerSecret(l *config.Listener, files *fileCache) (*tlsv3.Secret, error) {
	cert, err := files.get(l.TLS.CertFile)
	if err != nil {
		return nil, fmt.Errorf("tls: cert_file: %w", err)
	}
	key, err := files.get(l.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: key_file: %w", err)
	}
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("tls: %s and %s: %w", l.TLS.CertFile, l.TLS.KeyFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("tls: cert_file %s: %w", l.TLS.CertFile, err)
	}
	if now := time.Now(); now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("tls: cert_file %s: certificate expired at %s", l.TLS.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &tlsv3.Secret{
		Name: SecretName(l.Name),
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: cert}},
			PrivateKey:       &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: key}},
		}},
	}, nil
}
