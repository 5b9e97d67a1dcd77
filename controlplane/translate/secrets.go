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
	s, err := certificateSecret(SecretName(l.Name), l.TLS.CertFile, l.TLS.KeyFile, files)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return s, nil
}

// certificateSecret packs a checked certificate chain and key as a TLS certificate secret.
func certificateSecret(name, certFile, keyFile string, files *fileCache) (*tlsv3.Secret, error) {
	cert, err := files.get(certFile)
	if err != nil {
		return nil, fmt.Errorf("cert_file: %w", err)
	}
	key, err := files.get(keyFile)
	if err != nil {
		return nil, fmt.Errorf("key_file: %w", err)
	}
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("%s and %s: %w", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("cert_file %s: %w", certFile, err)
	}
	if now := time.Now(); now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("cert_file %s: certificate expired at %s", certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &tlsv3.Secret{
		Name: name,
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: cert}},
			PrivateKey:       &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: key}},
		}},
	}, nil
}

// caSecret packs a PEM CA bundle as a validation context secret; a file without a
// certificate in it is refused.
func caSecret(name, caFile string, files *fileCache) (*tlsv3.Secret, error) {
	ca, err := files.get(caFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", caFile)
	}
	return &tlsv3.Secret{
		Name: name,
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: ca}},
		}},
	}, nil
}
