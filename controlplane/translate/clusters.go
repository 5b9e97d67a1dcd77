package translate

import (
	"net"
	"strconv"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/scopegate/scopegate/controlplane/config"
)

// httpProtocolOptionsKey is the extension name Envoy looks up in typed_extension_protocol_options.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// authzUpstream describes the authz service as an upstream, so it is built like the others.
func authzUpstream(a config.Authz) *config.Upstream {
	return &config.Upstream{
		Name:           config.AuthzClusterName,
		Endpoints:      []string{a.Address},
		Timeout:        a.Timeout,
		ConnectTimeout: a.ConnectTimeout,
	}
}

// upstreamCluster builds an upstream's cluster. Endpoints that are all IP addresses are served
// by EDS (returned as the second value); a host name makes a STRICT_DNS cluster with the
// endpoints inline, because EDS addresses must be IPs and Envoy resolves names itself.
// http2 makes the cluster speak HTTP/2 (gRPC) upstream.
func upstreamCluster(u *config.Upstream, http2 bool) (*cluster.Cluster, *endpoint.ClusterLoadAssignment) {
	c := &cluster.Cluster{
		Name:           u.Name,
		ConnectTimeout: durationpb.New(u.ConnectTimeout),
		LbPolicy:       cluster.Cluster_ROUND_ROBIN,
	}
	if http2 {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{
			httpProtocolOptionsKey: mustAny(http2ProtocolOptions()),
		}
	}
	if path, ok := strings.CutPrefix(u.Endpoints[0], config.UnixPrefix); ok {
		// A Unix socket (authz as a sidecar): a static endpoint, nothing to discover.
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_STATIC}
		c.LoadAssignment = &endpoint.ClusterLoadAssignment{
			ClusterName: u.Name,
			Endpoints: []*endpoint.LocalityLbEndpoints{{LbEndpoints: []*endpoint.LbEndpoint{{
				HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
					Address: &core.Address{Address: &core.Address_Pipe{Pipe: &core.Pipe{Path: path}}},
				}},
			}}}},
		}
		return c, nil
	}
	cla := loadAssignment(u)
	if allIPs(u.Endpoints) {
		c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_EDS}
		c.EdsClusterConfig = &cluster.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource()}
		return c, cla
	}
	c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_STRICT_DNS}
	c.DnsLookupFamily = cluster.Cluster_V4_PREFERRED
	c.LoadAssignment = cla
	return c, nil
}

// http2ProtocolOptions makes a cluster speak HTTP/2 (the non-deprecated way, replacing
// Cluster.http2_protocol_options).
func http2ProtocolOptions() *upstreamhttp.HttpProtocolOptions {
	return &upstreamhttp.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &core.Http2ProtocolOptions{},
				},
			},
		},
	}
}

// loadAssignment lists an upstream's endpoints, in config order.
func loadAssignment(u *config.Upstream) *endpoint.ClusterLoadAssignment {
	lbs := make([]*endpoint.LbEndpoint, 0, len(u.Endpoints))
	for _, ep := range u.Endpoints {
		host, port := splitHostPort(ep)
		lbs = append(lbs, &endpoint.LbEndpoint{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{
				Endpoint: &endpoint.Endpoint{Address: socketAddress(host, port)},
			},
		})
	}
	return &endpoint.ClusterLoadAssignment{
		ClusterName: u.Name,
		Endpoints:   []*endpoint.LocalityLbEndpoints{{LbEndpoints: lbs}},
	}
}

func socketAddress(host string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Protocol:      core.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}

// adsConfigSource points a dependent resource (EDS, RDS, SDS) at the ADS stream.
func adsConfigSource() *core.ConfigSource {
	return &core.ConfigSource{
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
		ResourceApiVersion:    core.ApiVersion_V3,
	}
}

func allIPs(endpoints []string) bool {
	for _, ep := range endpoints {
		host, _ := splitHostPort(ep)
		if net.ParseIP(host) == nil {
			return false
		}
	}
	return true
}

// splitHostPort splits a validated host:port.
func splitHostPort(s string) (string, uint32) {
	host, port, _ := net.SplitHostPort(s)
	p, _ := strconv.ParseUint(port, 10, 16)
	return host, uint32(p)
}
