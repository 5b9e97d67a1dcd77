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
)

// routeConfiguration builds the listener's route configuration (named after the listener).
func routeConfiguration(l *config.Listener, cfg *config.Config) *route.RouteConfiguration {
	rc := &route.RouteConfiguration{Name: l.Name}
	for i := range l.VirtualHosts {
		rc.VirtualHosts = append(rc.VirtualHosts, virtualHost(&l.VirtualHosts[i], cfg))
	}
	return rc
}

func virtualHost(vh *config.VirtualHost, cfg *config.Config) *route.VirtualHost {
	out := &route.VirtualHost{
		Name:    vh.Name,
		Domains: append([]string(nil), vh.Domains...),
	}
	if vh.ResourceMetadata != nil {
		// First, so no API route can take the document's path (Validate refuses one that would).
		out.Routes = append(out.Routes, metadataRoute(vh))
	}
	for i := range vh.Routes {
		r := &vh.Routes[i]
		u, _ := cfg.Upstream(r.Upstream) // Validate guarantees it exists
		out.Routes = append(out.Routes, httpRoute(vh, r, u, cfg.Authz.IdentityHeaders))
	}
	return out
}

// httpRoute builds one route: match, forward to the upstream's cluster, and the ext_authz
// per-route config (context extensions for a protected route, disabled for a public one).
// A public route also strips the identity headers, which only ext_authz may set.
func httpRoute(vh *config.VirtualHost, r *config.Route, u *config.Upstream, identityHeaders []string) *route.Route {
	timeout := u.Timeout
	if r.Timeout > 0 {
		timeout = r.Timeout
	}
	var strip []string
	if r.Public {
		strip = append(strip, identityHeaders...)
	}
	return &route.Route{
		RequestHeadersToRemove: strip,
		Name:                   r.Name,
		Match:                  routeMatch(r.Match),
		Action: &route.Route_Route{Route: &route.RouteAction{
			ClusterSpecifier: &route.RouteAction_Cluster{Cluster: u.Name},
			Timeout:          durationpb.New(timeout),
		}},
		TypedPerFilterConfig: map[string]*anypb.Any{
			ExtAuthzFilterName: mustAny(extAuthzPerRoute(vh.RouteExtensions(r))),
		},
	}
}

// routeMatch matches the path (as config.Match.PathMatch says), the methods and the headers.
func routeMatch(m config.Match) *route.RouteMatch {
	rm := &route.RouteMatch{}
	kind, value := m.PathMatch()
	switch kind {
	case config.PathExact:
		rm.PathSpecifier = &route.RouteMatch_Path{Path: value}
	case config.PathPrefix:
		rm.PathSpecifier = &route.RouteMatch_Prefix{Prefix: value}
	case config.PathSeparatedPrefix:
		rm.PathSpecifier = &route.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: value}
	case config.PathRegex:
		rm.PathSpecifier = &route.RouteMatch_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: value}}
	}
	if !m.IsCaseSensitive() {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	if h := methodMatcher(m.Methods); h != nil {
		rm.Headers = []*route.HeaderMatcher{h}
	}
	for _, h := range m.Headers {
		rm.Headers = append(rm.Headers, headerMatcher(h))
	}
	return rm
}

// headerMatcher is one header matcher of the config as Envoy's.
func headerMatcher(h config.HeaderMatch) *route.HeaderMatcher {
	out := &route.HeaderMatcher{Name: h.Name, InvertMatch: h.Invert}
	kind, value := h.Kind()
	var sm *matcher.StringMatcher
	switch kind {
	case config.StringPresent:
		out.HeaderMatchSpecifier = &route.HeaderMatcher_PresentMatch{PresentMatch: value == "true"}
		return out
	case config.StringExact:
		sm = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: value}}
	case config.StringPrefix:
		sm = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Prefix{Prefix: value}}
	case config.StringSuffix:
		sm = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Suffix{Suffix: value}}
	case config.StringContains:
		sm = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Contains{Contains: value}}
	case config.StringRegex:
		sm = &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_SafeRegex{SafeRegex: &matcher.RegexMatcher{Regex: value}}}
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
// (config.VirtualHost.RouteExtensions, the route contract authz's own table yields too), or
// disables ext_authz on a public one (nil extensions).
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
