package translate

import (
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/scopegate/scopegate/controlplane/translate/names"
)

// metadataRoute answers the document from Envoy itself (direct_response): public (ext_authz
// disabled), any method, the exact RFC 9728 §3.1 path, JSON, cacheable by anyone.
func metadataRoute(m *MetadataRoute) *route.Route {
	hdr := func(k, v string) *core.HeaderValueOption {
		return &core.HeaderValueOption{Header: &core.HeaderValue{Key: k, Value: v},
			AppendAction: core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
	}
	return &route.Route{
		Name:  m.Name,
		Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Path{Path: m.Path}},
		Action: &route.Route_DirectResponse{DirectResponse: &route.DirectResponseAction{
			Status: 200,
			Body:   &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: string(m.Document)}},
		}},
		ResponseHeadersToAdd: []*core.HeaderValueOption{
			hdr("content-type", "application/json"),
			hdr("cache-control", m.CacheControl),
		},
		TypedPerFilterConfig: map[string]*anypb.Any{
			names.ExtAuthzFilter: mustAny(disabledExtAuthz()),
		},
	}
}
