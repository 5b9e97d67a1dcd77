package render

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/controlplane/translate/names"
)

// Gateway API (gateway.networking.k8s.io) and Envoy Gateway (gateway.envoyproxy.io) objects,
// as far as the rendering uses them.
type (
	httpRoute struct {
		APIVersion string        `json:"apiVersion"`
		Kind       string        `json:"kind"`
		Metadata   objectMeta    `json:"metadata"`
		Spec       httpRouteSpec `json:"spec"`
	}
	httpRouteSpec struct {
		ParentRefs []parentRef     `json:"parentRefs"`
		Hostnames  []string        `json:"hostnames,omitempty"`
		Rules      []httpRouteRule `json:"rules"`
	}
	parentRef struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace,omitempty"`
	}
	httpRouteRule struct {
		Name        string           `json:"name"`
		Matches     []httpRouteMatch `json:"matches"`
		BackendRefs []backendRef     `json:"backendRefs"`
	}
	httpRouteMatch struct {
		Path    *pathMatch         `json:"path,omitempty"`
		Method  string             `json:"method,omitempty"`
		Headers []headerMatchGWAPI `json:"headers,omitempty"`
	}
	pathMatch struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	}
	headerMatchGWAPI struct {
		Type  string `json:"type"`
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	backendRef struct {
		Group     *string `json:"group,omitempty"`
		Kind      string  `json:"kind,omitempty"`
		Name      string  `json:"name"`
		Namespace string  `json:"namespace,omitempty"`
		Port      int     `json:"port"`
	}

	securityPolicy struct {
		APIVersion string             `json:"apiVersion"`
		Kind       string             `json:"kind"`
		Metadata   objectMeta         `json:"metadata"`
		Spec       securityPolicySpec `json:"spec"`
	}
	securityPolicySpec struct {
		TargetRefs []targetRef `json:"targetRefs"`
		ExtAuth    extAuth     `json:"extAuth"`
	}
	targetRef struct {
		Group string `json:"group"`
		Kind  string `json:"kind"`
		Name  string `json:"name"`
	}
	extAuth struct {
		GRPC              extAuthGRPC        `json:"grpc"`
		Timeout           string             `json:"timeout"`
		FailOpen          bool               `json:"failOpen"`
		ContextExtensions []contextExtension `json:"contextExtensions,omitempty"`
	}
	extAuthGRPC struct {
		BackendRefs []backendRef `json:"backendRefs"`
	}
	contextExtension struct {
		Name  string `json:"name"`
		Type  string `json:"type"`
		Value string `json:"value"`
	}

	referenceGrant struct {
		APIVersion string             `json:"apiVersion"`
		Kind       string             `json:"kind"`
		Metadata   objectMeta         `json:"metadata"`
		Spec       referenceGrantSpec `json:"spec"`
	}
	referenceGrantSpec struct {
		From []grantFrom `json:"from"`
		To   []grantTo   `json:"to"`
	}
	grantFrom struct {
		Group     string `json:"group"`
		Kind      string `json:"kind"`
		Namespace string `json:"namespace"`
	}
	grantTo struct {
		Group string `json:"group"`
		Kind  string `json:"kind"`
		Name  string `json:"name,omitempty"`
	}
)

// EnvoyGateway renders, per route of every virtual host, an HTTPRoute (named after the
// virtual host, the route's position and name, so Gateway API's last tie-break keeps file
// order) and, per protected route, a SecurityPolicy targeting it whose extAuth calls authz
// with the route's contract as contextExtensions. The RFC 9728 metadata path gets an
// HTTPRoute and a SecurityPolicy without extensions: authz answers it from its own table.
//
// Gateway API orders routes by specificity (exact path, longest prefix, method, headers), not
// by file order: a file where a route is preceded by a less specific one overlapping it is
// refused, since Envoy Gateway would pick the later route where scopegate xds picks the
// earlier.
func EnvoyGateway(cfg *config.Config, o Options) ([]byte, error) {
	o.defaults()
	svc, err := parseService(o)
	if err != nil {
		return nil, err
	}
	gw := parentRef{Name: o.Gateway}
	if name, ns, ok := strings.Cut(o.Gateway, "/"); ok {
		gw = parentRef{Name: name, Namespace: ns}
	}
	authz := backendRef{Name: svc.name, Port: svc.port}
	if svc.namespace != o.Namespace {
		authz.Namespace = svc.namespace
	}
	policy := func(name string, ext map[string]string) securityPolicy {
		sp := securityPolicy{APIVersion: "gateway.envoyproxy.io/v1alpha1", Kind: "SecurityPolicy", Metadata: meta(name, o.Namespace),
			Spec: securityPolicySpec{
				TargetRefs: []targetRef{{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: name}},
				ExtAuth: extAuth{GRPC: extAuthGRPC{BackendRefs: []backendRef{authz}}, Timeout: cfg.Authz.Timeout.String(),
					FailOpen: cfg.Authz.FailureModeAllow},
			}}
		keys := make([]string, 0, len(ext))
		for k := range ext {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			sp.Spec.ExtAuth.ContextExtensions = append(sp.Spec.ExtAuth.ContextExtensions, contextExtension{Name: k, Type: "Value", Value: ext[k]})
		}
		return sp
	}
	var objs []any
	var errs []string
	for _, vh := range cfg.MeshVirtualHosts() {
		if err := checkOrder(&vh, gatewayEntries(&vh), gatewayAPIOrder, "Gateway API"); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		hosts, err := gatewayHostnames(&vh)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if p := metadataPath(&vh); p != "" {
			name := objectName(vh.Name, "00", "resource-metadata")
			rule := httpRouteRule{Name: "resource-metadata", Matches: []httpRouteMatch{{Path: &pathMatch{Type: "Exact", Value: p}}},
				// authz answers the SecurityPolicy's Check with the document itself: the
				// backend (authz too) is never called.
				BackendRefs: []backendRef{authz}}
			objs = append(objs, httpRoute{APIVersion: "gateway.networking.k8s.io/v1", Kind: "HTTPRoute", Metadata: meta(name, o.Namespace),
				Spec: httpRouteSpec{ParentRefs: []parentRef{gw}, Hostnames: hosts, Rules: []httpRouteRule{rule}}}, policy(name, nil))
		}
		for i := range vh.Routes {
			r := &vh.Routes[i]
			matches, err := gatewayMatches(r.Match)
			if err != nil {
				errs = append(errs, fmt.Sprintf("virtual host %q: route %q: %v", vh.Name, r.Name, err))
				continue
			}
			svcName, port, err := upstreamRef(cfg, &vh, r)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			name := objectName(vh.Name, fmt.Sprintf("%02d", i+1), r.Name)
			objs = append(objs, httpRoute{APIVersion: "gateway.networking.k8s.io/v1", Kind: "HTTPRoute", Metadata: meta(name, o.Namespace),
				Spec: httpRouteSpec{ParentRefs: []parentRef{gw}, Hostnames: hosts, Rules: []httpRouteRule{{
					Name: objectName(r.Name), Matches: matches, BackendRefs: []backendRef{{Name: svcName, Port: port}}}}}})
			if ext := vh.RouteExtensions(r); ext != nil {
				objs = append(objs, policy(name, ext))
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("envoy-gateway: %s", strings.Join(errs, "\n"))
	}
	if authz.Namespace != "" {
		objs = append(objs, referenceGrant{APIVersion: "gateway.networking.k8s.io/v1beta1", Kind: "ReferenceGrant",
			Metadata: meta(objectName(ProviderName, "from", o.Namespace), svc.namespace),
			Spec: referenceGrantSpec{
				From: []grantFrom{{Group: "gateway.envoyproxy.io", Kind: "SecurityPolicy", Namespace: o.Namespace},
					{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Namespace: o.Namespace}},
				To: []grantTo{{Group: "", Kind: "Service", Name: svc.name}},
			}})
	}
	return documents(`Envoy Gateway: HTTPRoutes for the routes of the file, a SecurityPolicy per protected route
calling scopegate authz with the route's contract. Rendered by scopegate render envoy-gateway.`, objs...)
}

// gatewayHostnames are vh's domains as Gateway API hostnames: exact names and "*." wildcards;
// ports are dropped (hostnames match without them) and "*" is every host.
func gatewayHostnames(vh *config.VirtualHost) ([]string, error) {
	var out []string
	for _, h := range hostsOf(vh) {
		switch {
		case h == "*":
			return nil, nil
		case strings.HasSuffix(h, "*") || (strings.HasPrefix(h, "*") && !strings.HasPrefix(h, "*.")):
			return nil, fmt.Errorf("virtual host %q: domain %q: Gateway API hostnames take only a leading \"*.\" wildcard", vh.Name, h)
		}
		out = append(out, h)
	}
	return out, nil
}

// gatewayMatches are the route's match as Gateway API matches: one per method (a match has
// one), the path exactly as Envoy matches it (a segment prefix is Gateway API's PathPrefix;
// a plain prefix, a case-insensitive path and a regex are RegularExpression, which Envoy
// Gateway matches whole, RE2), the header matchers as Exact or RegularExpression.
func gatewayMatches(m config.Match) ([]httpRouteMatch, error) {
	var path *pathMatch
	kind, v := m.PathMatch()
	fold := !m.IsCaseSensitive()
	switch {
	case kind == config.PathRegex:
		path = &pathMatch{Type: "RegularExpression", Value: v}
	case kind == config.PathPrefix && v == "/":
		path = &pathMatch{Type: "PathPrefix", Value: "/"}
	case fold || kind == config.PathPrefix:
		path = &pathMatch{Type: "RegularExpression", Value: pathRegex(kind, v, fold)}
	case kind == config.PathExact:
		path = &pathMatch{Type: "Exact", Value: v}
	default:
		path = &pathMatch{Type: "PathPrefix", Value: v}
	}
	var headers []headerMatchGWAPI
	for _, h := range m.Headers {
		hm, err := gatewayHeader(h)
		if err != nil {
			return nil, err
		}
		headers = append(headers, hm)
	}
	if len(m.Methods) == 0 {
		return []httpRouteMatch{{Path: path, Headers: headers}}, nil
	}
	var out []httpRouteMatch
	for _, meth := range m.Methods {
		out = append(out, httpRouteMatch{Path: path, Method: meth, Headers: headers})
	}
	return out, nil
}

// pathRegex is an RE2 expression for a non-regex path match (matched whole).
func pathRegex(kind config.PathKind, v string, fold bool) string {
	re := regexp.QuoteMeta(v)
	switch kind {
	case config.PathPrefix:
		re += ".*"
	case config.PathSeparatedPrefix:
		re += "(/.*)?"
	}
	if fold {
		re = "(?i)" + re
	}
	return re
}

func gatewayHeader(h config.HeaderMatch) (headerMatchGWAPI, error) {
	kind, v := h.Kind()
	if h.Invert || (kind == config.StringPresent && v == "false") {
		return headerMatchGWAPI{}, fmt.Errorf("header %q: Gateway API has no inverted or absent-header match", h.Name)
	}
	q := regexp.QuoteMeta(v)
	var re string
	switch kind {
	case config.StringExact:
		if !h.IgnoreCase {
			return headerMatchGWAPI{Type: "Exact", Name: h.Name, Value: v}, nil
		}
		re = q
	case config.StringPrefix:
		re = q + ".*"
	case config.StringSuffix:
		re = ".*" + q
	case config.StringContains:
		re = ".*" + q + ".*"
	case config.StringRegex:
		re = v
	case config.StringPresent:
		re = ".*"
	}
	if h.IgnoreCase {
		re = "(?i)" + re
	}
	return headerMatchGWAPI{Type: "RegularExpression", Name: h.Name, Value: re}, nil
}

// entry is one route as a provider orders it: its path match's kind and value, whether it
// has a method, how many header matchers; a config route may render as several.
type entry struct {
	route   int    // the config route's index in its virtual host
	kind    string // "exact", "prefix" (by segments for Gateway API, by string for Contour) or "regex"
	value   string
	method  bool
	headers int
	paths   pathSet
}

// orderRule reports whether a provider tries a before b, and whether it says at all (known).
type orderRule func(a, b entry) (before, known bool)

// gatewayAPIOrder is Gateway API's precedence: an exact path, then the longest prefix, then
// a method match, then the most header matches; regular expressions are ordered as the
// implementation likes.
func gatewayAPIOrder(a, b entry) (bool, bool) {
	switch {
	case a.kind == "regex" || b.kind == "regex":
		return false, false
	case a.kind != b.kind:
		return a.kind == "exact", true
	case a.kind == "prefix" && len(a.value) != len(b.value):
		return len(a.value) > len(b.value), true
	case a.method != b.method:
		return a.method, true
	}
	return a.headers > b.headers, true
}

// checkOrder refuses a virtual host whose file order the provider's order would change: a
// route j after a route i that overlaps it, where the provider would try j first and so take
// requests scopegate xds sends to i.
func checkOrder(vh *config.VirtualHost, entries []entry, order orderRule, provider string) error {
	for j := range entries {
		for i := 0; i < j; i++ {
			a, b := entries[i], entries[j]
			if a.route == b.route || !a.paths.overlaps(b.paths) {
				continue
			}
			if before, known := order(b, a); known && before {
				name := func(i int) string {
					if i < 0 {
						return names.MetadataRoute(vh.Name)
					}
					return vh.Routes[i].Name
				}
				ra, rb := name(a.route), name(b.route)
				return fmt.Errorf("virtual host %q: route %q comes after route %q, which overlaps it, but %s orders routes by specificity "+
					"and would try %q first, taking requests scopegate xds sends to %q: put %q first", vh.Name, rb, ra, provider, rb, ra, rb)
			}
		}
	}
	return nil
}

// gatewayEntries are vh's routes as Gateway API orders them.
func gatewayEntries(vh *config.VirtualHost) []entry {
	var out []entry
	for i := range vh.Routes {
		m := vh.Routes[i].Match
		matches, err := gatewayMatches(m)
		if err != nil || len(matches) == 0 {
			continue
		}
		kind := map[string]string{"Exact": "exact", "PathPrefix": "prefix", "RegularExpression": "regex"}[matches[0].Path.Type]
		out = append(out, entry{route: i, kind: kind, value: matches[0].Path.Value, method: len(m.Methods) > 0,
			headers: len(m.Headers), paths: pathsOf(m)})
	}
	return out
}
