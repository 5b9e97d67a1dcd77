package render

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/scopegate/scopegate/controlplane/config"
)

// Istio's AuthorizationPolicy (security.istio.io/v1) and EnvoyFilter (networking.istio.io/
// v1alpha3), and MeshConfig's extension provider, as far as the rendering uses them.
type (
	authorizationPolicy struct {
		APIVersion string     `json:"apiVersion"`
		Kind       string     `json:"kind"`
		Metadata   objectMeta `json:"metadata"`
		Spec       apSpec     `json:"spec"`
	}
	apSpec struct {
		Selector *workloadSelector `json:"selector,omitempty"`
		Action   string            `json:"action"`
		Provider apProvider        `json:"provider"`
		Rules    []apRule          `json:"rules"`
	}
	workloadSelector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	}
	apProvider struct {
		Name string `json:"name"`
	}
	apRule struct {
		To []apTo `json:"to"`
	}
	apTo struct {
		Operation apOperation `json:"operation"`
	}
	apOperation struct {
		Hosts    []string `json:"hosts,omitempty"`
		Paths    []string `json:"paths,omitempty"`
		NotPaths []string `json:"notPaths,omitempty"`
	}

	envoyFilter struct {
		APIVersion string     `json:"apiVersion"`
		Kind       string     `json:"kind"`
		Metadata   objectMeta `json:"metadata"`
		Spec       efSpec     `json:"spec"`
	}
	efSpec struct {
		WorkloadSelector *efSelector `json:"workloadSelector,omitempty"`
		ConfigPatches    []efPatch   `json:"configPatches"`
	}
	efSelector struct {
		Labels map[string]string `json:"labels"`
	}
	efPatch struct {
		ApplyTo string  `json:"applyTo"`
		Match   efMatch `json:"match"`
		Patch   efOp    `json:"patch"`
	}
	efMatch struct {
		Context  string     `json:"context"`
		Listener efListener `json:"listener"`
	}
	efListener struct {
		FilterChain efChain `json:"filterChain"`
	}
	efChain struct {
		Filter efFilter `json:"filter"`
	}
	efFilter struct {
		Name      string      `json:"name"`
		SubFilter efSubFilter `json:"subFilter"`
	}
	efSubFilter struct {
		Name string `json:"name"`
	}
	efOp struct {
		Operation string         `json:"operation"`
		Value     map[string]any `json:"value"`
	}

	istiodValues struct {
		MeshConfig meshConfig `json:"meshConfig"`
	}
	meshConfig struct {
		ExtensionProviders []extensionProvider `json:"extensionProviders"`
	}
	extensionProvider struct {
		Name              string            `json:"name"`
		EnvoyExtAuthzGrpc extAuthzGRPCIstio `json:"envoyExtAuthzGrpc"`
	}
	extAuthzGRPCIstio struct {
		Service       string `json:"service"`
		Port          int    `json:"port"`
		Timeout       string `json:"timeout"`
		FailOpen      bool   `json:"failOpen"`
		StatusOnError string `json:"statusOnError"`
	}
)

// IstioMeshConfig is istiod's Helm values fragment (the same block goes under an
// IstioOperator's spec): the extension provider "scopegate", authz over gRPC, with the
// control plane file's authz timeout, failure mode and status. The gRPC provider sends every
// request header (authorization and dpop among them).
func IstioMeshConfig(cfg *config.Config, o Options) ([]byte, error) {
	o.defaults()
	svc, err := parseService(o)
	if err != nil {
		return nil, err
	}
	v := istiodValues{MeshConfig: meshConfig{ExtensionProviders: []extensionProvider{{
		Name: ProviderName,
		EnvoyExtAuthzGrpc: extAuthzGRPCIstio{Service: svc.fqdn(), Port: svc.port,
			Timeout: fmt.Sprintf("%gs", cfg.Authz.Timeout.Seconds()), FailOpen: cfg.Authz.FailureModeAllow,
			StatusOnError: fmt.Sprint(cfg.Authz.StatusOnError)},
	}}}}
	return documents(`istiod values (helm upgrade istiod istio/istiod -f THIS; or under an IstioOperator's spec):
the extension provider the AuthorizationPolicy of "scopegate render istio" names.
Rendered by scopegate render istio --mesh-config.`, v)
}

// Istio renders the AuthorizationPolicy (action CUSTOM, provider scopegate) whose rules send
// authz the requests of every protected route, and, with PeerCertificate, the EnvoyFilter that
// makes the gateways include the client certificate in the CheckRequest.
//
// Istio's operations match hosts and paths only (exact, prefix or suffix), so each virtual
// host's rule takes a superset of its protected routes: a regex or case-insensitive route,
// or one with methods or header matchers, sends its whole host or path prefix to authz,
// which matches the request in its own table (the same file) and allows what turns out
// public. A public route that no earlier protected route overlaps is left out (notPaths):
// it never reaches authz. Nothing protected is ever left out.
func Istio(cfg *config.Config, o Options) ([]byte, error) {
	o.defaults()
	ap := authorizationPolicy{APIVersion: "security.istio.io/v1", Kind: "AuthorizationPolicy",
		Metadata: meta(ProviderName, o.Namespace),
		Spec:     apSpec{Action: "CUSTOM", Provider: apProvider{Name: ProviderName}}}
	if len(o.Selector) > 0 {
		ap.Spec.Selector = &workloadSelector{MatchLabels: o.Selector}
	}
	for _, vh := range cfg.MeshVirtualHosts() {
		if op, ok := istioOperation(&vh); ok {
			ap.Spec.Rules = append(ap.Spec.Rules, apRule{To: []apTo{{Operation: op}}})
		}
	}
	if len(ap.Spec.Rules) == 0 {
		return nil, fmt.Errorf("no protected route: nothing needs scopegate authz")
	}
	objs := []any{ap}
	if o.PeerCertificate {
		objs = append(objs, peerCertificateFilter(o))
	}
	return documents(`Istio: send the protected routes' requests to scopegate authz (extension provider "scopegate":
scopegate render istio --mesh-config). Rendered by scopegate render istio.`, objs...)
}

// pathSet is a set of request paths as Istio's operations write them: exact paths, and
// prefixes ("/x/*" matches every path starting with "/x/"); all is every path; fold says
// the paths match without regard to ASCII case (which Istio's paths can't say).
type pathSet struct {
	all      bool
	fold     bool
	exact    []string
	prefixes []string // without the "*"
}

// pathsOf is a superset of the paths route r can match, in Istio's terms. A regex's paths
// all start with its literal prefix.
func pathsOf(m config.Match) pathSet {
	kind, v := m.PathMatch()
	if kind == config.PathRegex {
		re, err := regexp.Compile(`^(?:` + v + `)$`)
		if err != nil {
			return pathSet{all: true}
		}
		switch pre, complete := re.LiteralPrefix(); {
		case complete:
			return pathSet{exact: []string{pre}}
		case len(pre) > 1:
			return pathSet{prefixes: []string{pre}}
		}
		return pathSet{all: true}
	}
	fold := !m.IsCaseSensitive()
	switch kind {
	case config.PathExact:
		return pathSet{exact: []string{v}, fold: fold}
	case config.PathSeparatedPrefix:
		return pathSet{exact: []string{v}, prefixes: []string{v + "/"}, fold: fold}
	}
	if v == "/" {
		return pathSet{all: true}
	}
	return pathSet{prefixes: []string{v}, fold: fold}
}

func (p pathSet) lower() pathSet {
	l := pathSet{all: p.all}
	for _, e := range p.exact {
		l.exact = append(l.exact, strings.ToLower(e))
	}
	for _, e := range p.prefixes {
		l.prefixes = append(l.prefixes, strings.ToLower(e))
	}
	return l
}

func (p pathSet) overlaps(q pathSet) bool {
	if p.all || q.all {
		return true
	}
	if p.fold || q.fold {
		p, q = p.lower(), q.lower()
	}
	for _, a := range p.exact {
		for _, b := range q.exact {
			if a == b {
				return true
			}
		}
		for _, b := range q.prefixes {
			if strings.HasPrefix(a, b) {
				return true
			}
		}
	}
	for _, a := range p.prefixes {
		for _, b := range q.exact {
			if strings.HasPrefix(b, a) {
				return true
			}
		}
		for _, b := range q.prefixes {
			if strings.HasPrefix(a, b) || strings.HasPrefix(b, a) {
				return true
			}
		}
	}
	return false
}

func (p pathSet) patterns() []string {
	out := append([]string(nil), p.exact...)
	for _, pre := range p.prefixes {
		out = append(out, pre+"*")
	}
	return out
}

// istioOperation is the operation that takes vh's requests authz must see: its protected
// routes' paths (and its metadata document's, which authz answers), less the public routes
// that come before any protected route overlapping them. ok is false when vh has no
// protected route and no metadata.
func istioOperation(vh *config.VirtualHost) (apOperation, bool) {
	var need pathSet
	var protected []pathSet
	if p := metadataPath(vh); p != "" {
		need.exact = append(need.exact, p)
		protected = append(protected, pathSet{exact: []string{p}})
	}
	var notPaths []string
	for i := range vh.Routes {
		r := &vh.Routes[i]
		ps := pathsOf(r.Match)
		if !r.Public {
			protected = append(protected, ps)
			need.all = need.all || ps.all || ps.fold // Istio's paths are case-sensitive
			need.exact = append(need.exact, ps.exact...)
			need.prefixes = append(need.prefixes, ps.prefixes...)
			continue
		}
		if ps.all || ps.fold || len(r.Match.Methods) > 0 || len(r.Match.Headers) > 0 {
			continue // public only for some requests of its paths: authz sorts them out
		}
		shadowed := false
		for _, p := range protected {
			shadowed = shadowed || p.overlaps(ps)
		}
		if !shadowed {
			notPaths = append(notPaths, ps.patterns()...)
		}
	}
	if len(protected) == 0 {
		return apOperation{}, false
	}
	op := apOperation{Hosts: istioHosts(vh)}
	if !need.all {
		op.Paths = dedupe(need.patterns())
	}
	if len(notPaths) > 0 && (need.all || need.overlaps(publicSet(notPaths))) {
		op.NotPaths = dedupe(notPaths)
	}
	return op, true
}

func publicSet(patterns []string) pathSet {
	var s pathSet
	for _, p := range patterns {
		if pre, ok := strings.CutSuffix(p, "*"); ok {
			s.prefixes = append(s.prefixes, pre)
		} else {
			s.exact = append(s.exact, p)
		}
	}
	return s
}

// istioHosts are vh's domains as Istio's hosts match them (case-insensitive; exact, prefix
// or suffix "*"): an exact domain also with any port ("host:*"), since Istio compares the
// authority as sent; "*" is any host (no hosts).
func istioHosts(vh *config.VirtualHost) []string {
	var hosts []string
	for _, d := range vh.Domains {
		d = strings.ToLower(d)
		switch {
		case d == "*":
			return nil
		case strings.Contains(d, "*") || strings.Contains(d, ":"):
			hosts = append(hosts, d)
		default:
			hosts = append(hosts, d, d+":*")
		}
	}
	return dedupe(hosts)
}

func dedupe(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// peerCertificateFilter makes the selected gateways' ext_authz filter (the one Istio builds
// for the extension provider) send the client certificate Envoy verified: RFC 8705
// certificate-bound tokens need it, and Istio's MeshConfig has no field for it.
func peerCertificateFilter(o Options) envoyFilter {
	f := envoyFilter{APIVersion: "networking.istio.io/v1alpha3", Kind: "EnvoyFilter",
		Metadata: meta(ProviderName+"-peer-certificate", o.Namespace),
		Spec: efSpec{ConfigPatches: []efPatch{{
			ApplyTo: "HTTP_FILTER",
			Match: efMatch{Context: "GATEWAY", Listener: efListener{FilterChain: efChain{Filter: efFilter{
				Name: "envoy.filters.network.http_connection_manager", SubFilter: efSubFilter{Name: "envoy.filters.http.ext_authz"}}}}},
			Patch: efOp{Operation: "MERGE", Value: map[string]any{
				"name": "envoy.filters.http.ext_authz",
				"typed_config": map[string]any{
					"@type":                    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
					"include_peer_certificate": true,
				},
			}},
		}}}}
	if len(o.Selector) > 0 {
		f.Spec.WorkloadSelector = &efSelector{Labels: o.Selector}
	}
	return f
}
