package translate

import (
	"fmt"
	"net"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/scopegate/scopegate/controlplane/config"
)

// SDS secrets of the Envoy → authz hop: the CA that verifies authz, and Envoy's client
// certificate. Both are pushed by SDS, so a rotation on disk is an SDS push only.
const (
	AuthzCASecretName     = config.AuthzClusterName + ".ca"
	AuthzClientSecretName = config.AuthzClusterName + ".client"
)

// authzTLS gives the authz cluster its TLS transport socket and returns the secrets it
// references.
func authzTLS(a config.Authz, files *fileCache) (*core.TransportSocket, []*tlsv3.Secret, error) {
	t := a.TLS
	ca, err := caSecret(AuthzCASecretName, t.CAFile, files)
	if err != nil {
		return nil, nil, fmt.Errorf("authz: tls: %w", err)
	}
	secrets := []*tlsv3.Secret{ca}
	withClientCert := t.CertFile != ""
	if withClientCert {
		client, err := certificateSecret(AuthzClientSecretName, t.CertFile, t.KeyFile, files)
		if err != nil {
			return nil, nil, fmt.Errorf("authz: tls: %w", err)
		}
		secrets = append(secrets, client)
	}
	return &core.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(upstreamTLS(a, withClientCert))},
	}, secrets, nil
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
