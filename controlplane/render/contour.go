package render

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/scopegate/scopegate/controlplane/config"
)

// Contour's HTTPProxy (projectcontour.io/v1) and ExtensionService (v1alpha1), as far as the
// rendering uses them.
type (
	httpProxy struct {
		APIVersion string        `json:"apiVersion"`
		Kind       string        `json:"kind"`
		Metadata   objectMeta    `json:"metadata"`
		Spec       httpProxySpec `json:"spec"`
	}
	httpProxySpec struct {
		VirtualHost contourVirtualHost `json:"virtualhost"`
		Routes      []contourRoute     `json:"routes"`
	}
	contourVirtualHost struct {
		FQDN          string               `json:"fqdn"`
		TLS           contourTLS           `json:"tls"`
		Authorization contourAuthorization `json:"authorization"`
	}
	contourTLS struct {
		SecretName string `json:"secretName"`
	}
	contourAuthorization struct {
		ExtensionServiceRef contourExtensionRef `json:"extensionRef"`
		ResponseTimeout     string              `json:"responseTimeout"`
		FailOpen            bool                `json:"failOpen,omitempty"`
	}
	contourExtensionRef struct {
		APIVersion string `json:"apiVersion"`
		Namespace  string `json:"namespace"`
		Name       string `json:"name"`
	}
	contourRoute struct {
		Conditions []contourCondition `json:"conditions"`
		Services   []contourService   `json:"services"`
		AuthPolicy *contourAuthPolicy `json:"authPolicy,omitempty"`
	}
	contourCondition struct {
		Prefix string         `json:"prefix,omitempty"`
		Exact  string         `json:"exact,omitempty"`
		Regex  string         `json:"regex,omitempty"`
		Header *contourHeader `json:"header,omitempty"`
	}
	contourHeader struct {
		Name        string `json:"name"`
		Present     bool   `json:"present,omitempty"`
		NotPresent  bool   `json:"notpresent,omitempty"`
		Contains    string `json:"contains,omitempty"`
		NotContains string `json:"notcontains,omitempty"`
		IgnoreCase  bool   `json:"ignoreCase,omitempty"`
		Exact       string `json:"exact,omitempty"`
		NotExact    string `json:"notexact,omitempty"`
		Regex       string `json:"regex,omitempty"`
	}
	contourService struct {
		Name string `json:"name"`
		Port int    `json:"port"`
	}
	contourAuthPolicy struct {
		Disabled bool              `json:"disabled,omitempty"`
		Context  map[string]string `json:"context,omitempty"`
	}

	extensionService struct {
		APIVersion string               `json:"apiVersion"`
		Kind       string               `json:"kind"`
		Metadata   objectMeta           `json:"metadata"`
		Spec       extensionServiceSpec `json:"spec"`
	}
	extensionServiceSpec struct {
		Services      []contourService     `json:"services"`
		Protocol      string               `json:"protocol"`
		TimeoutPolicy contourTimeoutPolicy `json:"timeoutPolicy"`
	}
	contourTimeoutPolicy struct {
		Response string `json:"response"`
	}
)

// Contour renders the ExtensionService that names authz (gRPC over h2c; in authz's
// namespace) and, per host name of every virtual host, an HTTPProxy (Contour authorizes TLS
// virtual hosts only: TLSSecret names the certificate) whose routes carry each route's
// contract as authPolicy.context, or authPolicy.disabled for a public route. A segment prefix
// renders as two routes (the exact path, and the prefix with "/"), a case-insensitive path as
// a regex; Contour orders routes itself (exact, regex, longest prefix), and a file whose order
// it would change is refused.
func Contour(cfg *config.Config, o Options) ([]byte, error) {
	o.defaults()
	svc, err := parseService(o)
	if err != nil {
		return nil, err
	}
	ext := extensionService{APIVersion: "projectcontour.io/v1alpha1", Kind: "ExtensionService", Metadata: meta(svc.name, svc.namespace),
		Spec: extensionServiceSpec{Services: []contourService{{Name: svc.name, Port: svc.port}}, Protocol: "h2c",
			TimeoutPolicy: contourTimeoutPolicy{Response: cfg.Authz.Timeout.String()}}}
	objs := []any{ext}
	var errs []string
	for _, vh := range cfg.MeshVirtualHosts() {
		routes, entries, err := contourRoutes(cfg, &vh)
		if err == nil {
			err = checkOrder(&vh, entries, contourOrder, "Contour")
		}
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		for _, host := range hostsOf(&vh) {
			if host == "*" || strings.HasSuffix(host, "*") || (strings.HasPrefix(host, "*") && !strings.HasPrefix(host, "*.")) {
				errs = append(errs, fmt.Sprintf("virtual host %q: domain %q: an HTTPProxy's fqdn is a host name or a \"*.\" wildcard", vh.Name, host))
				continue
			}
			name := objectName(vh.Name, strings.ReplaceAll(strings.TrimPrefix(host, "*."), ".", "-"))
			if strings.HasPrefix(host, "*.") {
				name = objectName(vh.Name, "wildcard", strings.ReplaceAll(host[2:], ".", "-"))
			}
			objs = append(objs, httpProxy{APIVersion: "projectcontour.io/v1", Kind: "HTTPProxy", Metadata: meta(name, o.Namespace),
				Spec: httpProxySpec{
					VirtualHost: contourVirtualHost{FQDN: host, TLS: contourTLS{SecretName: strings.ReplaceAll(o.TLSSecret, "{vhost}", objectName(vh.Name))},
						Authorization: contourAuthorization{
							ExtensionServiceRef: contourExtensionRef{APIVersion: "projectcontour.io/v1alpha1", Namespace: svc.namespace, Name: svc.name},
							ResponseTimeout:     cfg.Authz.Timeout.String(), FailOpen: cfg.Authz.FailureModeAllow}},
					Routes: routes,
				}})
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("contour: %s", strings.Join(errs, "\n"))
	}
	return documents(`Contour: the ExtensionService for scopegate authz and an HTTPProxy per host name whose routes
carry the route's contract (authPolicy.context). Rendered by scopegate render contour.`, objs...)
}

// contourRoutes are vh's routes as Contour routes, in file order, with the entries Contour
// orders them by. The metadata path comes first, sent to authz (which answers it).
func contourRoutes(cfg *config.Config, vh *config.VirtualHost) ([]contourRoute, []entry, error) {
	var routes []contourRoute
	var entries []entry
	if p := metadataPath(vh); p != "" && len(vh.Routes) > 0 {
		// No route contract: authz finds the metadata route in its own table and answers
		// the Check with the document, so the service is never called.
		svcName, port, err := upstreamRef(cfg, vh, &vh.Routes[0])
		if err != nil {
			return nil, nil, err
		}
		routes = append(routes, contourRoute{Conditions: []contourCondition{{Exact: p}}, Services: []contourService{{Name: svcName, Port: port}}})
		entries = append(entries, entry{route: -1, kind: "exact", value: p, paths: pathSet{exact: []string{p}}})
	}
	for i := range vh.Routes {
		r := &vh.Routes[i]
		paths, err := contourPaths(r.Match)
		if err != nil {
			return nil, nil, fmt.Errorf("virtual host %q: route %q: %w", vh.Name, r.Name, err)
		}
		var conds []contourCondition
		if meth := r.Match.Methods; len(meth) == 1 {
			conds = append(conds, contourCondition{Header: &contourHeader{Name: ":method", Exact: meth[0]}})
		} else if len(meth) > 1 {
			conds = append(conds, contourCondition{Header: &contourHeader{Name: ":method", Regex: strings.Join(meth, "|")}})
		}
		for _, h := range r.Match.Headers {
			c, err := contourHeaderCondition(h)
			if err != nil {
				return nil, nil, fmt.Errorf("virtual host %q: route %q: %w", vh.Name, r.Name, err)
			}
			conds = append(conds, contourCondition{Header: c})
		}
		svcName, port, err := upstreamRef(cfg, vh, r)
		if err != nil {
			return nil, nil, err
		}
		policy := &contourAuthPolicy{Disabled: true}
		if ext := vh.RouteExtensions(r); ext != nil {
			policy = &contourAuthPolicy{Context: ext}
		}
		for _, p := range paths {
			routes = append(routes, contourRoute{Conditions: append([]contourCondition{p}, conds...),
				Services: []contourService{{Name: svcName, Port: port}}, AuthPolicy: policy})
			e := entry{route: i, method: len(r.Match.Methods) > 0, headers: len(r.Match.Headers)}
			switch {
			case p.Exact != "":
				e.kind, e.value, e.paths = "exact", p.Exact, pathSet{exact: []string{p.Exact}}
			case p.Prefix != "":
				e.kind, e.value, e.paths = "prefix", p.Prefix, pathSet{prefixes: []string{p.Prefix}}
				if p.Prefix == "/" {
					e.paths = pathSet{all: true}
				}
			default:
				e.kind, e.value, e.paths = "regex", p.Regex, pathsOf(r.Match)
			}
			entries = append(entries, e)
		}
	}
	return routes, entries, nil
}

// contourPaths are the path conditions matching what the route's match does (each one a
// Contour route of its own).
func contourPaths(m config.Match) ([]contourCondition, error) {
	kind, v := m.PathMatch()
	switch {
	case kind == config.PathRegex:
		return []contourCondition{{Regex: v}}, nil
	case !m.IsCaseSensitive():
		return []contourCondition{{Regex: pathRegex(kind, v, true)}}, nil
	case kind == config.PathExact:
		return []contourCondition{{Exact: v}}, nil
	case kind == config.PathPrefix:
		return []contourCondition{{Prefix: v}}, nil
	}
	return []contourCondition{{Exact: v}, {Prefix: v + "/"}}, nil
}

func contourHeaderCondition(h config.HeaderMatch) (*contourHeader, error) {
	kind, v := h.Kind()
	c := &contourHeader{Name: h.Name, IgnoreCase: h.IgnoreCase && (kind == config.StringExact || kind == config.StringContains)}
	q := regexp.QuoteMeta(v)
	fold := ""
	if h.IgnoreCase {
		fold = "(?i)"
	}
	switch {
	case kind == config.StringPresent:
		want := (v == "true") != h.Invert
		c.Present, c.NotPresent = want, !want
	case kind == config.StringExact && h.Invert:
		c.NotExact = v
	case kind == config.StringExact:
		c.Exact = v
	case kind == config.StringContains && h.Invert:
		c.NotContains = v
	case kind == config.StringContains:
		c.Contains = v
	case h.Invert:
		return nil, fmt.Errorf("header %q: Contour has no inverted prefix, suffix or regex match", h.Name)
	case kind == config.StringPrefix:
		c.Regex = fold + q + ".*"
	case kind == config.StringSuffix:
		c.Regex = fold + ".*" + q
	default:
		c.Regex = v
	}
	return c, nil
}

// contourOrder is Contour's route order: exact paths, then regular expressions (longest
// first), then prefixes (longest first), then more header conditions.
func contourOrder(a, b entry) (bool, bool) {
	rank := map[string]int{"exact": 3, "regex": 2, "prefix": 1}
	switch {
	case rank[a.kind] != rank[b.kind]:
		return rank[a.kind] > rank[b.kind], true
	case a.kind != "exact" && len(a.value) != len(b.value):
		return len(a.value) > len(b.value), true
	}
	ah, bh := a.headers, b.headers
	if a.method {
		ah++
	}
	if b.method {
		bh++
	}
	return ah > bh, true
}
