package translate

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/internal/spiffe"
)

// SDS secrets of the Envoy → authz hop: the CA that verifies authz, and Envoy's client
// certificate. Both are pushed by SDS, so a rotation on disk is an SDS push only.
const (
	AuthzCASecretName     = config.AuthzClusterName + ".ca"
	AuthzClientSecretName = config.AuthzClusterName + ".client"
)

// authzTLS gives the authz cluster of fleet f its TLS transport socket and returns the
// secrets it references: the CA, and the fleet's client certificate (its authz_tls, else
// authz.tls's).
func authzTLS(cfg *config.Config, f *config.Fleet, files *fileCache) (*core.TransportSocket, []*tlsv3.Secret, error) {
	a := cfg.Authz
	t := a.TLS
	ca, err := caSecret(AuthzCASecretName, t.CAFile, files)
	if err != nil {
		return nil, nil, fmt.Errorf("authz: tls: %w", err)
	}
	secrets := []*tlsv3.Secret{ca}
	certFile, keyFile, at := cfg.AuthzClientCert(f)
	withClientCert := certFile != ""
	if withClientCert {
		if err := notAFleetIdentity(certFile, at, files); err != nil {
			return nil, nil, err
		}
		client, err := certificateSecret(AuthzClientSecretName, certFile, keyFile, files)
		if err != nil {
			if f.AuthzTLS != nil {
				return nil, nil, fmt.Errorf("authz_tls: %w", err)
			}
			return nil, nil, fmt.Errorf("authz: tls: %w", err)
		}
		secrets = append(secrets, client)
	}
	return &core.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(upstreamTLS(a, withClientCert))},
	}, secrets, nil
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

// upstreamTLS is Envoy's TLS client context for authz: TLS 1.2 at least, ALPN h2 (gRPC
// servers refuse TLS without it), the CA and client certificate by SDS, and the authz
// certificate's SAN matched against the server name, which is also sent as SNI. Without
// server_name the host of authz.address is used: a DNS name as SNI and DNS SAN, an IP
// address as IP SAN (SNI can't carry an IP).
func upstreamTLS(a config.Authz, withClientCert bool) *tlsv3.UpstreamTlsContext {
	name, sanType := a.TLS.ServerName, tlsv3.SubjectAltNameMatcher_DNS
	if name == "" {
		name, _ = splitHostPort(a.Address)
		if net.ParseIP(name) != nil {
			sanType = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
		}
	}
	common := &tlsv3.CommonTlsContext{
		TlsParams:     &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
		AlpnProtocols: []string{"h2"},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext: &tlsv3.CertificateValidationContext{
					MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: sanType,
						Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: name}},
					}},
				},
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: AuthzCASecretName, SdsConfig: adsConfigSource()},
			},
		},
	}
	if withClientCert {
		common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: AuthzClientSecretName, SdsConfig: adsConfigSource()}}
	}
	ctx := &tlsv3.UpstreamTlsContext{CommonTlsContext: common}
	if sanType == tlsv3.SubjectAltNameMatcher_DNS {
		ctx.Sni = name
	}
	return ctx
}
