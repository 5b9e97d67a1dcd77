package translate

import (
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// secret packs a checked certificate and key, or a CA bundle, inline in an SDS secret.
func secret(s *Secret) *tlsv3.Secret {
	if c := s.Certificate; c != nil {
		return &tlsv3.Secret{
			Name: s.Name,
			Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: inlineBytes(c.Chain),
				PrivateKey:       inlineBytes(c.Key),
			}},
		}
	}
	return &tlsv3.Secret{
		Name: s.Name,
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inlineBytes(s.TrustedCA),
		}},
	}
}

func inlineBytes(b []byte) *core.DataSource {
	return &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: b}}
}
