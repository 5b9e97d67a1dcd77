// Package bootstrap writes the Envoy bootstrap that points an Envoy at the control plane:
// node identity (its fleet is node.cluster), ADS over gRPC (state-of-the-world or delta) to an
// HTTP/2 cluster, clusters and listeners from ADS, and a loopback-only admin listener.
package bootstrap

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	overload "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	healthcheck "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	downstream "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/scopegate/scopegate/controlplane/translate"
	"github.com/scopegate/scopegate/internal/yamlfile"
)

// Defaults.
const (
	DefaultAdminPort = 9901
	// XDSClusterName is the static cluster the ADS stream uses.
	XDSClusterName = "scopegate_xds"
	// MaxDownstreamConnections is the global connection limit Envoy asks edge proxies to set.
	MaxDownstreamConnections = 50000
)

// Options describe one Envoy.
type Options struct {
	NodeID string
	Fleet  string
	// XDS is the control plane's host:port.
	XDS string
	// AdminPort is the admin listener's port, bound to 127.0.0.1 only.
	AdminPort int
	// Delta selects incremental xDS (DELTA_GRPC) instead of state-of-the-world.
	Delta bool
	// XDSCA, when set, makes the ADS connection TLS, verifying the control plane with this CA
	// file; XDSCert and XDSKey are Envoy's client certificate (its SPIFFE ID names the fleet).
	// They are paths on the Envoy host: the xDS hop's credentials can't come from xDS itself.
	XDSCA, XDSCert, XDSKey string
	// XDSServerName is the SNI sent and the DNS SAN required of the control plane's
	// certificate (default: the host of XDS; an IP is matched as an IP SAN).
	XDSServerName string
	// ReadyPort, when set, adds a listener on 0.0.0.0 that answers GET /ready with 200 while
	// Envoy is initialised and not draining: a readiness probe for an orchestrator, which
	// can't reach the loopback-only admin listener. 0: no such listener.
	ReadyPort int
}

// Build makes and validates the bootstrap.
func Build(o Options) (*bootstrapv3.Bootstrap, error) {
	if o.AdminPort == 0 {
		o.AdminPort = DefaultAdminPort
	}
	switch {
	case o.NodeID == "":
		return nil, fmt.Errorf("bootstrap: node id is required")
	case o.Fleet == "":
		return nil, fmt.Errorf("bootstrap: fleet is required (it becomes node.cluster)")
	case o.AdminPort < 1 || o.AdminPort > 65535:
		return nil, fmt.Errorf("bootstrap: admin port %d is out of range 1-65535", o.AdminPort)
	case o.ReadyPort < 0 || o.ReadyPort > 65535:
		return nil, fmt.Errorf("bootstrap: ready port %d is out of range 1-65535", o.ReadyPort)
	case o.ReadyPort != 0 && o.ReadyPort == o.AdminPort:
		return nil, fmt.Errorf("bootstrap: ready port %d is the admin port", o.ReadyPort)
	}
	host, portStr, err := net.SplitHostPort(o.XDS)
	if err != nil || host == "" {
		return nil, fmt.Errorf("bootstrap: xds %q is not host:port", o.XDS)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("bootstrap: xds %q has an invalid port", o.XDS)
	}
	switch {
	case o.XDSCA == "" && (o.XDSCert != "" || o.XDSKey != "" || o.XDSServerName != ""):
		return nil, fmt.Errorf("bootstrap: --xds-cert, --xds-key and --xds-server-name need --xds-ca (TLS to the control plane)")
	case (o.XDSCert == "") != (o.XDSKey == ""):
		return nil, fmt.Errorf("bootstrap: --xds-cert and --xds-key go together")
	}

	apiType := core.ApiConfigSource_GRPC
	if o.Delta {
		apiType = core.ApiConfigSource_DELTA_GRPC
	}
	ads := &core.ConfigSource{
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
		ResourceApiVersion:    core.ApiVersion_V3,
	}
	b := &bootstrapv3.Bootstrap{
		Node: &core.Node{Id: o.NodeID, Cluster: o.Fleet},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &core.ApiConfigSource{
				ApiType:             apiType,
				TransportApiVersion: core.ApiVersion_V3,
				GrpcServices: []*core.GrpcService{{
					TargetSpecifier: &core.GrpcService_EnvoyGrpc_{EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: XDSClusterName}},
				}},
				SetNodeOnFirstMessageOnly: true,
			},
			CdsConfig: ads,
			LdsConfig: ads,
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters: []*cluster.Cluster{xdsCluster(host, uint32(port), o)},
		},
		Admin: &bootstrapv3.Admin{
			Address: socketAddress("127.0.0.1", uint32(o.AdminPort)),
		},
		OverloadManager: &overload.OverloadManager{
			ResourceMonitors: []*overload.ResourceMonitor{{
				Name: "envoy.resource_monitors.global_downstream_max_connections",
				ConfigType: &overload.ResourceMonitor_TypedConfig{TypedConfig: mustAny(&downstream.DownstreamConnectionsConfig{
					MaxActiveDownstreamConnections: MaxDownstreamConnections,
				})},
			}},
		},
	}
	if o.ReadyPort != 0 {
		b.StaticResources.Listeners = append(b.StaticResources.Listeners, readyListener(uint32(o.ReadyPort)))
	}
	if err := translate.ValidateMessage(b, "bootstrap"); err != nil {
		return nil, err
	}
	return b, nil
}

// ReadyListenerName names the static listener that answers readiness probes.
const ReadyListenerName = "scopegate_ready"

// readyListener answers GET /ready itself (health_check filter, no pass-through): 200 while
// Envoy is healthy, 503 once it is draining or failed by /healthcheck/fail. Envoy starts
// listeners only after its initial xDS fetch, so until then the probe can't connect: the
// same meaning as the admin /ready. Every other path gets 404 from an empty route table.
func readyListener(port uint32) *listener.Listener {
	hc := &healthcheck.HealthCheck{
		PassThroughMode: wrapperspb.Bool(false),
		Headers: []*route.HeaderMatcher{{
			Name:                 ":path",
			HeaderMatchSpecifier: &route.HeaderMatcher_StringMatch{StringMatch: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: "/ready"}}},
		}},
	}
	cm := &hcm.HttpConnectionManager{
		StatPrefix:     ReadyListenerName,
		CodecType:      hcm.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{Name: ReadyListenerName}},
		HttpFilters: []*hcm.HttpFilter{
			{Name: wellknown.HealthCheck, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(hc)}},
			{Name: wellknown.Router, ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: mustAny(&router.Router{})}},
		},
	}
	return &listener.Listener{
		Name:    ReadyListenerName,
		Address: socketAddress("0.0.0.0", port),
		FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{{
			Name:       wellknown.HTTPConnectionManager,
			ConfigType: &listener.Filter_TypedConfig{TypedConfig: mustAny(cm)},
		}}}},
	}
}

// xdsCluster reaches the control plane over HTTP/2 with keepalive pings, so a dead
// connection is noticed and ADS reconnects. A host name is resolved by Envoy (STRICT_DNS).
func xdsCluster(host string, port uint32, o Options) *cluster.Cluster {
	typ := cluster.Cluster_STRICT_DNS
	if net.ParseIP(host) != nil {
		typ = cluster.Cluster_STATIC
	}
	var ts *core.TransportSocket
	if o.XDSCA != "" {
		ts = &core.TransportSocket{
			Name:       wellknown.TransportSocketTLS,
			ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(xdsTLS(host, o))},
		}
	}
	return &cluster.Cluster{
		TransportSocket:      ts,
		Name:                 XDSClusterName,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: typ},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpoint.ClusterLoadAssignment{
			ClusterName: XDSClusterName,
			Endpoints: []*endpoint.LocalityLbEndpoints{{LbEndpoints: []*endpoint.LbEndpoint{{
				HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: socketAddress(host, port)}},
			}}}},
		},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&upstreamhttp.HttpProtocolOptions{
				UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_{
					ExplicitHttpConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{
						ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
							Http2ProtocolOptions: &core.Http2ProtocolOptions{
								ConnectionKeepalive: &core.KeepaliveSettings{
									Interval: durationpb.New(30 * time.Second),
									Timeout:  durationpb.New(5 * time.Second),
								},
							},
						},
					},
				},
			}),
		},
	}
}

// xdsTLS is Envoy's TLS client context for ADS, from files on the Envoy host: TLS 1.2 at
// least, ALPN h2 (gRPC servers refuse TLS without it), the control plane's certificate
// verified by the CA and its SAN matched against the server name (sent as SNI too).
func xdsTLS(host string, o Options) *tlsv3.UpstreamTlsContext {
	name, sanType := o.XDSServerName, tlsv3.SubjectAltNameMatcher_DNS
	if name == "" {
		name = host
		if net.ParseIP(host) != nil {
			sanType = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
		}
	}
	file := func(path string) *core.DataSource {
		return &core.DataSource{Specifier: &core.DataSource_Filename{Filename: path}}
	}
	common := &tlsv3.CommonTlsContext{
		TlsParams:     &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
		AlpnProtocols: []string{"h2"},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: file(o.XDSCA),
			MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
				SanType: sanType,
				Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: name}},
			}},
		}},
	}
	if o.XDSCert != "" {
		common.TlsCertificates = []*tlsv3.TlsCertificate{{CertificateChain: file(o.XDSCert), PrivateKey: file(o.XDSKey)}}
	}
	ctx := &tlsv3.UpstreamTlsContext{CommonTlsContext: common}
	if sanType == tlsv3.SubjectAltNameMatcher_DNS {
		ctx.Sni = name
	}
	return ctx
}

func socketAddress(host string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address: host, PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}

func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic(err) // static messages built above: cannot fail
	}
	return a
}

// YAML renders the bootstrap as YAML (proto field names), headed by a comment saying how it
// was generated.
func YAML(b *bootstrapv3.Bootstrap, header string) ([]byte, error) {
	root, err := yamlfile.ProtoNode(b)
	if err != nil {
		return nil, err
	}
	root.HeadComment = header
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Parse reads a bootstrap YAML strictly (unknown fields are errors) and validates it.
func Parse(data []byte) (*bootstrapv3.Bootstrap, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	js, err := jsonFromYAML(v)
	if err != nil {
		return nil, err
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		return nil, err
	}
	if err := translate.ValidateMessage(b, "bootstrap"); err != nil {
		return nil, err
	}
	return b, nil
}

// Command is the scopegate command line that generates the bootstrap for o.
func Command(o Options) string {
	if o.AdminPort == 0 {
		o.AdminPort = DefaultAdminPort
	}
	cmd := fmt.Sprintf("scopegate bootstrap --node-id %s --fleet %s --xds %s --admin-port %d", o.NodeID, o.Fleet, o.XDS, o.AdminPort)
	if o.Delta {
		cmd += " --delta"
	}
	for _, f := range [][2]string{{"--xds-ca", o.XDSCA}, {"--xds-cert", o.XDSCert}, {"--xds-key", o.XDSKey}, {"--xds-server-name", o.XDSServerName}} {
		if f[1] != "" {
			cmd += " " + f[0] + " " + f[1]
		}
	}
	if o.ReadyPort != 0 {
		cmd += fmt.Sprintf(" --ready-port %d", o.ReadyPort)
	}
	return cmd
}

// Render builds the bootstrap for o and renders it as YAML headed by the command that
// generated it.
func Render(o Options) ([]byte, error) {
	b, err := Build(o)
	if err != nil {
		return nil, err
	}
	return YAML(b, "Envoy bootstrap generated by:\n  "+Command(o)+"\nDo not edit: regenerate with that command (envoy/ files: go test ./controlplane/bootstrap -update).")
}
