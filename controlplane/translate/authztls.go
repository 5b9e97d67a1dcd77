package translate

import (
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// upstreamTLS is Envoy's TLS client context for authz: TLS 1.2 at least, ALPN h2 (gRPC
// servers refuse TLS without it), the CA and client certificate by SDS (so a rotation on disk
// is an SDS push only), and the authz certificate's SAN matched against the server name,
// which is also sent as SNI when it is a DNS name.
func upstreamTLS(t *UpstreamTLS) *tlsv3.UpstreamTlsContext {
	sanType := tlsv3.SubjectAltNameMatcher_DNS
	if t.ServerIP {
		sanType = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
	}
	common := &tlsv3.CommonTlsContext{
		TlsParams:     &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
		AlpnProtocols: []string{"h2"},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext: &tlsv3.CertificateValidationContext{
					MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: sanType,
						Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: t.ServerName}},
					}},
				},
				ValidationContextSdsSecretConfig: sdsSecret(t.CASecret),
			},
		},
	}
	if t.ClientSecret != "" {
		common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{sdsSecret(t.ClientSecret)}
	}
	ctx := &tlsv3.UpstreamTlsContext{CommonTlsContext: common}
	if !t.ServerIP {
		ctx.Sni = t.ServerName
	}
	return ctx
}

// sdsSecret refers to the SDS secret called name, served over ADS.
func sdsSecret(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsConfigSource()}
}
