package translate

import (
	"regexp"
	"strings"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthz "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/controlplane/translate/names"
)

// routeConfiguration builds the listener's route configuration.
func routeConfiguration(l *Listener) *route.RouteConfiguration {
	rc := &route.RouteConfiguration{Name: l.RouteConfig}
	for i := range l.VirtualHosts {
		rc.VirtualHosts = append(rc.VirtualHosts, virtualHost(&l.VirtualHosts[i]))
	}
	return rc
}

func virtualHost(vh *VirtualHost) *route.VirtualHost {
	out := &route.VirtualHost{
		Name:    vh.Name,
		Domains: append([]string(nil), vh.Domains...),
	}
	if vh.Metadata != nil {
		// First, so no API route can take the document's path (Validate refuses one that would).
		out.Routes = append(out.Routes, metadataRoute(vh.Metadata))
	}
	for i := range vh.Routes {
		out.Routes = append(out.Routes, httpRoute(&vh.Routes[i]))
	}
	return out
}

// httpRoute builds one route: match, forward to the cluster, and the ext_authz per-route
// config (context extensions for a protected route, disabled for a public one, which also
// strips the identity headers only ext_authz may set).
func httpRoute(r *Route) *route.Route {
	return &route.Route{
		RequestHeadersToRemove: append([]string(nil), r.StripHeaders...),
		Name:                   r.Name,
		Match:                  routeMatch(&r.Match),
		Action: &route.Route_Route{Route: &route.RouteAction{
			ClusterSpecifier: &route.RouteAction_Cluster{Cluster: r.Cluster},
			Timeout:          durationpb.New(r.Timeout),
		}},
		TypedPerFilterConfig: map[string]*anypb.Any{
			names.ExtAuthzFilter: mustAny(extAuthzPerRoute(r.Extensions)),
		},
	}
}

// routeMatch matches the path, the methods and the headers.
func routeMatch(m *RouteMatch) *route.RouteMatch {
	rm := &route.RouteMatch{}
	switch m.PathKind {
	case config.PathExact:
		rm.PathSpecifier = &route.RouteMatch_Path{Path: m.Path}
	case config.PathPrefix:
		rm.PathSpecifier = &route.RouteMatch_Prefix{Prefix: m.Path}
	case config.PathSeparatedPrefix:
		rm.PathSpecifier = &route.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: m.Path}
	case config.PathRegex:
		rm.PathSpecifier = &route.RouteMatch_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: m.Path}}
	}
	if m.IgnoreCase {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	if h := methodMatcher(m.Methods); h != nil {
		rm.Headers = []*route.HeaderMatcher{h}
	}
	for i := range m.Headers {
		rm.Headers = append(rm.Headers, headerMatcher(&m.Headers[i]))
	}
	return rm
}

// headerMatcher is one header matcher as Envoy's.
func headerMatcher(h *HeaderMatch) *route.HeaderMatcher {
	out := &route.HeaderMatcher{Name: h.Name, InvertMatch: h.Invert}
	var sm *matcher.StringMatcher
	switch h.Kind {
	case config.StringPresent:
		out.HeaderMatchSpecifier = &route.HeaderMatcher_PresentMatch{PresentMatch: h.Value == "true"}
		return out
	case config.StringExact:
		sm = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: h.Value}}
	case config.StringPrefix:
		sm = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: h.Value}}
	case config.StringSuffix:
		sm = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Suffix{Suffix: h.Value}}
	case config.StringContains:
		sm = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Contains{Contains: h.Value}}
	case config.StringRegex:
		sm = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: h.Value}}}
	}
	sm.IgnoreCase = h.IgnoreCase
	out.HeaderMatchSpecifier = &route.HeaderMatcher_StringMatch{StringMatch: sm}
	return out
}

// methodMatcher matches the :method pseudo-header: exactly for one method, by an anchored
// regular expression for several (header matchers in one route are ANDed, not ORed).
func methodMatcher(methods []string) *route.HeaderMatcher {
	var sm *matcher.StringMatcher
	switch len(methods) {
	case 0:
		return nil
	case 1:
		sm = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: methods[0]}}
	default:
		quoted := make([]string, len(methods))
		for i, m := range methods {
			quoted[i] = regexp.QuoteMeta(m)
		}
		sm = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_SafeRegex{
			SafeRegex: &matcher.RegexMatcher{Regex: "^(" + strings.Join(quoted, "|") + ")$"},
		}}
	}
	return &route.HeaderMatcher{
		Name:                 ":method",
		HeaderMatchSpecifier: &route.HeaderMatcher_StringMatch{StringMatch: sm},
	}
}

// extAuthzPerRoute labels a protected route for the policy with its context extensions
// (Route.Extensions: the route contract authz's own table yields too), or disables ext_authz
// on a public one (nil extensions).
func extAuthzPerRoute(ext map[string]string) *extauthz.ExtAuthzPerRoute {
	if ext == nil {
		return disabledExtAuthz()
	}
	return &extauthz.ExtAuthzPerRoute{Override: &extauthz.ExtAuthzPerRoute_CheckSettings{
		CheckSettings: &extauthz.CheckSettings{ContextExtensions: ext},
	}}
}

func disabledExtAuthz() *extauthz.ExtAuthzPerRoute {
	return &extauthz.ExtAuthzPerRoute{Override: &extauthz.ExtAuthzPerRoute_Disabled{Disabled: true}}
}
