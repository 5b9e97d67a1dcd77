package translate

import (
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	extauthz "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/scopegate/scopegate/controlplane/translate/names"
)

const (
	// Edge hardening (Envoy's edge-proxy best practices).
	connectionBufferLimit = 32 * 1024
	streamIdleTimeout     = 5 * time.Minute
	connectionIdleTimeout = time.Hour
)

// httpListener builds a listener whose one filter chain runs the HTTP connection manager
// (routes by RDS), terminating TLS when the listener has it.
func httpListener(l *Listener, authz *ExtAuthz) *listener.Listener {
	chain := &listener.FilterChain{
		Filters: []*listener.Filter{{
			Name:       wellknown.HTTPConnectionManager,
			ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(connectionManager(l.RouteConfig, authz))},
		}},
	}
	if l.TLS != nil {
		chain.TransportSocket = &core.TransportSocket{
			Name:       wellknown.TransportSocketTLS,
			ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(downstreamTLS(l.TLS))},
		}
	}
	return &listener.Listener{
		Name:                          l.Name,
		Address:                       socketAddress(l.Address, l.Port),
		FilterChains:                  []*listener.FilterChain{chain},
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(connectionBufferLimit),
	}
}

// connectionManager builds the HTTP connection manager: routes from RDS (the listener's route
// configuration, also the statistics prefix), then ext_authz, then the router. Paths are
// normalised and merged before routing, so "//admin" or "/a/../admin" cannot dodge a route.
func connectionManager(routeConfigName string, authz *ExtAuthz) *hcm.HttpConnectionManager {
	return &hcm.HttpConnectionManager{
		StatPrefix: routeConfigName,
		CodecType:  hcm.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			RouteConfigName: routeConfigName,
			ConfigSource:    adsConfigSource(),
		}},
		HttpFilters: []*hcm.HttpFilter{
			{
				Name:       names.ExtAuthzFilter,
				ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(extAuthz(authz))},
			},
			{
				Name:       wellknown.Router,
				ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&router.Router{})},
			},
		},
		UseRemoteAddress:             wrapperspb.Bool(true),
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcm.HttpConnectionManager_UNESCAPE_AND_REDIRECT,
		StreamIdleTimeout:            durationpb.New(streamIdleTimeout),
		CommonHttpProtocolOptions: &core.HttpProtocolOptions{
			IdleTimeout:                  durationpb.New(connectionIdleTimeout),
			HeadersWithUnderscoresAction: core.HttpProtocolOptions_REJECT_REQUEST,
		},
	}
}

// extAuthz builds the ext_authz filter: gRPC (API v3) to the authz cluster.
func extAuthz(a *ExtAuthz) *extauthz.ExtAuthz {
	return &extauthz.ExtAuthz{
		Services: &extauthz.ExtAuthz_GrpcService{GrpcService: &core.GrpcService{
			TargetSpecifier: &core.GrpcService_EnvoyGrpc_{EnvoyGrpc: &core.GrpcService_EnvoyGrpc{
				ClusterName: a.Cluster,
			}},
			Timeout: durationpb.New(a.Timeout),
		}},
		TransportApiVersion:    core.ApiVersion_V3,
		FailureModeAllow:       a.FailureModeAllow,
		StatusOnError:          &typev3.HttpStatus{Code: typev3.StatusCode(a.StatusOnError)},
		IncludePeerCertificate: a.IncludePeerCertificate,
	}
}

// downstreamTLS terminates TLS with the certificate of the listener's SDS secret and, with a
// client CA, asks for (or requires) a client certificate that chains to it: Envoy then
// forwards it to authz for certificate-bound tokens.
func downstreamTLS(t *DownstreamTLS) *tlsv3.DownstreamTlsContext {
	ctx := &tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams: &tlsv3.TlsParameters{
				TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2,
			},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(t.CertSecret)},
			AlpnProtocols:                  []string{"h2", "http/1.1"},
		},
	}
	if t.ClientCASecret != "" {
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: sdsSecret(t.ClientCASecret),
		}
		ctx.RequireClientCertificate = wrapperspb.Bool(t.RequireClientCertificate)
	}
	return ctx
}

// mustAny packs m, deterministically: map fields (context extensions, per-filter configs)
// otherwise marshal in random order, and the content version would change on every build.
// Packing fails only on a message that cannot be marshalled (such as
// invalid UTF-8 in a string field); resources turns that panic into an error.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic(packError{err})
	}
	return a
}

type packError struct{ err error }
