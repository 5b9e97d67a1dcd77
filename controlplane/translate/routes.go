package translate

import (
	"regexp"
	"strings"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthz "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/internal/contract"
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
	docURL := ""
	if vh.ResourceMetadata != nil {
		// First, so no API route can take the document's path (Validate refuses one that would).
		out.Routes = append(out.Routes, metadataRoute(vh))
		docURL = vh.ResourceMetadata.DocumentURL()
	}
	for i := range vh.Routes {
		r := &vh.Routes[i]
		u, _ := cfg.Upstream(r.Upstream) // Validate guarantees it exists
		out.Routes = append(out.Routes, httpRoute(r, u, cfg.Authz.IdentityHeaders, docURL))
	}
	return out
}

// httpRoute builds one route: match, forward to the upstream's cluster, and the ext_authz
// per-route config (context extensions for a protected route, disabled for a public one).
// A public route also strips the identity headers, which only ext_authz may set.
func httpRoute(r *config.Route, u *config.Upstream, identityHeaders []string, docURL string) *route.Route {
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
			ExtAuthzFilterName: mustAny(extAuthzPerRoute(r, docURL)),
		},
	}
}

// routeMatch matches the path and the methods. A prefix that does not end in "/" matches on
// path segments: "/orders" matches "/orders" and "/orders/1", not "/ordersx", so a scope
// granted for one API never leaks onto a sibling whose name shares the prefix.
func routeMatch(m config.Match) *route.RouteMatch {
	rm := &route.RouteMatch{}
	switch {
	case m.Path != "":
		rm.PathSpecifier = &route.RouteMatch_Path{Path: m.Path}
	case strings.HasSuffix(m.Prefix, "/"):
		rm.PathSpecifier = &route.RouteMatch_Prefix{Prefix: m.Prefix}
	default:
		rm.PathSpecifier = &route.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: m.Prefix}
	}
	if h := methodMatcher(m.Methods); h != nil {
		rm.Headers = []*route.HeaderMatcher{h}
	}
	return rm
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

// extAuthzPerRoute labels a protected route for the policy (route name, required scopes
// space-separated, mode "shadow" for shadow routes, binding "required" for routes that take
// only sender-constrained tokens, the RFC 9470 step-up requirements acr_values (space-separated)
// and max_age (seconds), and the resource metadata document's URL for the 401 challenge) or
// disables ext_authz on a public one.
func extAuthzPerRoute(r *config.Route, docURL string) *extauthz.ExtAuthzPerRoute {
	if r.Public {
		return disabledExtAuthz()
	}
	ext := map[string]string{
		contract.ExtRoute:  r.Name,
		contract.ExtScopes: strings.Join(r.Scopes, " "),
	}
	if r.Mode == contract.ModeShadow {
		ext[contract.ExtMode] = contract.ModeShadow
	}
	if r.Binding == contract.BindingRequired {
		ext[contract.ExtBinding] = contract.BindingRequired
	}
	if len(r.ACRValues) > 0 {
		ext[contract.ExtACRValues] = strings.Join(r.ACRValues, " ")
	}
	if r.MaxAge > 0 {
		ext[contract.ExtMaxAge] = contract.FormatMaxAge(r.MaxAge)
	}
	if docURL != "" {
		ext[contract.ExtResourceMetadata] = docURL
	}
	return &extauthz.ExtAuthzPerRoute{Override: &extauthz.ExtAuthzPerRoute_CheckSettings{
		CheckSettings: &extauthz.CheckSettings{ContextExtensions: ext},
	}}
}

func disabledExtAuthz() *extauthz.ExtAuthzPerRoute {
	return &extauthz.ExtAuthzPerRoute{Override: &extauthz.ExtAuthzPerRoute_Disabled{Disabled: true}}
}
