package translate

import (
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// httpProtocolOptionsKey is the extension name Envoy looks up in typed_extension_protocol_options.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// clusterResources builds a cluster and, when EDS serves its endpoints, its endpoints
// (returned as the second value). A host name among the endpoints makes a STRICT_DNS cluster
// with the endpoints inline; a Unix socket, a STATIC one.
func clusterResources(c *Cluster) (*cluster.Cluster, *endpoint.ClusterLoadAssignment) {
	out := &cluster.Cluster{
		Name:           c.Name,
		ConnectTimeout: durationpb.New(c.ConnectTimeout),
		LbPolicy:       cluster.Cluster_ROUND_ROBIN,
	}
	if c.HTTP2 {
		out.TypedExtensionProtocolOptions = map[string]*anypb.Any{
			httpProtocolOptionsKey: mustAny(http2ProtocolOptions()),
		}
	}
	if c.TLS != nil {
		out.TransportSocket = &core.TransportSocket{
			Name:       wellknown.TransportSocketTLS,
			ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: mustAny(upstreamTLS(c.TLS))},
		}
	}
	switch c.Discovery {
	case DiscoveryStatic:
		out.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_STATIC}
		out.LoadAssignment = &endpoint.ClusterLoadAssignment{
			ClusterName: c.Name,
			Endpoints: []*endpoint.LocalityLbEndpoints{{LbEndpoints: []*endpoint.LbEndpoint{{
				HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
					Address: &core.Address{Address: &core.Address_Pipe{Pipe: &core.Pipe{Path: c.Socket}}},
				}},
			}}}},
		}
		return out, nil
	case DiscoveryEDS:
		out.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_EDS}
		out.EdsClusterConfig = &cluster.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource()}
		return out, loadAssignment(c)
	}
	out.ClusterDiscoveryType = &cluster.Cluster_Type{Type: cluster.Cluster_STRICT_DNS}
	out.DnsLookupFamily = cluster.Cluster_V4_PREFERRED
	out.LoadAssignment = loadAssignment(c)
	return out, nil
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

// loadAssignment lists a cluster's endpoints, in config order.
func loadAssignment(c *Cluster) *endpoint.ClusterLoadAssignment {
	lbs := make([]*endpoint.LbEndpoint, 0, len(c.Endpoints))
	for _, ep := range c.Endpoints {
		lbs = append(lbs, &endpoint.LbEndpoint{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{
				Endpoint: &endpoint.Endpoint{Address: socketAddress(ep.Host, ep.Port)},
			},
		})
	}
	return &endpoint.ClusterLoadAssignment{
		ClusterName: c.Name,
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
