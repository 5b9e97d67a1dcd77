// Package render writes the manifests that make another control plane's Envoys call scopegate
// authz, from the same file scopegate xds reads ("mesh mode"): Istio's MeshConfig extension
// provider and AuthorizationPolicy, Envoy Gateway's HTTPRoutes and SecurityPolicies, and
// Contour's ExtensionService and HTTPProxies. Every route contract in them comes from
// config.VirtualHost.RouteExtensions, as the control plane's own and authz's table do.
//
// The manifests are built from small typed structs shaped as the providers' API types
// (their own Go modules are large; the tests decode every rendering strictly with them).
package render

import (
	"bytes"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/scopegate/scopegate/controlplane/config"
)

// Options say where the manifests go and where authz runs.
type Options struct {
	// Namespace holds the rendered routes and policies.
	Namespace string
	// AuthzService is the authz Service as NAME[.NAMESPACE][.svc[.cluster.local]]:PORT (its
	// namespace defaults to Namespace).
	AuthzService string
	// Selector (Istio) limits the AuthorizationPolicy and EnvoyFilter to these workload
	// labels (e.g. istio=ingressgateway); empty: every workload of Namespace.
	Selector map[string]string
	// PeerCertificate (Istio) adds the EnvoyFilter that sends the client certificate to authz
	// (certificate-bound tokens, RFC 8705).
	PeerCertificate bool
	// Gateway (Envoy Gateway) is the parent Gateway of the HTTPRoutes, NAME[/NAMESPACE].
	Gateway string
	// TLSSecret (Contour) names the TLS Secret of each HTTPProxy (Contour authorizes TLS
	// virtual hosts only); "{vhost}" is replaced by the virtual host's name.
	TLSSecret string
}

// Defaults for Options left empty.
const (
	DefaultNamespace    = "default"
	DefaultAuthzService = "scopegate-authz.scopegate:9191"
	DefaultGateway      = "scopegate"
	DefaultTLSSecret    = "{vhost}-tls"
	// ProviderName names the Istio extension provider and every rendered object's prefix.
	ProviderName = "scopegate"
)

func (o *Options) defaults() {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.AuthzService == "" {
		o.AuthzService = DefaultAuthzService
	}
	if o.Gateway == "" {
		o.Gateway = DefaultGateway
	}
	if o.TLSSecret == "" {
		o.TLSSecret = DefaultTLSSecret
	}
}

// service is the authz Service, resolved.
type service struct {
	name, namespace string
	port            int
}

// fqdn is the Service's cluster DNS name.
func (s service) fqdn() string { return s.name + "." + s.namespace + ".svc.cluster.local" }

func parseService(o Options) (service, error) {
	host, port, err := net.SplitHostPort(o.AuthzService)
	if err != nil {
		return service{}, fmt.Errorf("--authz-service %q: want NAME[.NAMESPACE]:PORT", o.AuthzService)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return service{}, fmt.Errorf("--authz-service %q: bad port", o.AuthzService)
	}
	labels := strings.Split(strings.TrimSuffix(host, ".svc.cluster.local"), ".")
	labels = slicesTrim(labels, "svc")
	s := service{name: labels[0], namespace: o.Namespace, port: p}
	if len(labels) > 1 {
		s.namespace = labels[1]
	}
	if len(labels) > 2 || !dns1123.MatchString(s.name) || !dns1123.MatchString(s.namespace) {
		return service{}, fmt.Errorf("--authz-service %q: want NAME[.NAMESPACE][.svc[.cluster.local]]:PORT", o.AuthzService)
	}
	return s, nil
}

func slicesTrim(labels []string, last string) []string {
	if len(labels) > 1 && labels[len(labels)-1] == last {
		return labels[:len(labels)-1]
	}
	return labels
}

var (
	dns1123  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	notLabel = regexp.MustCompile(`[^a-z0-9-]+`)
)

// objectName is a Kubernetes object name (DNS-1123 subdomain label) made from parts.
func objectName(parts ...string) string {
	n := notLabel.ReplaceAllString(strings.ToLower(strings.Join(parts, "-")), "-")
	n = strings.Trim(n, "-")
	if len(n) > 63 {
		n = strings.TrimRight(n[:63], "-")
	}
	return n
}

// objectMeta is metav1.ObjectMeta's part the manifests use.
type objectMeta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

func meta(name, namespace string) objectMeta {
	return objectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": "scopegate-render"}}
}

// documents writes objects as one YAML stream, a comment heading it.
func documents(heading string, objs ...any) ([]byte, error) {
	var b bytes.Buffer
	for _, line := range strings.Split(strings.TrimSpace(heading), "\n") {
		b.WriteString("# " + line + "\n")
	}
	for i, o := range objs {
		y, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(y)
	}
	return b.Bytes(), nil
}

// hostsOf are vh's domains without ports (deduplicated, sorted), for the APIs whose host
// names carry none; a port-bearing domain's host is served by the same virtual host.
func hostsOf(vh *config.VirtualHost) []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range vh.Domains {
		d = strings.ToLower(d)
		if h, p, err := net.SplitHostPort(d); err == nil && p != "" && !strings.Contains(d, "*") {
			d = h
		}
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// metadataPath is vh's RFC 9728 document path ("" without resource_metadata).
func metadataPath(vh *config.VirtualHost) string {
	if vh.ResourceMetadata == nil {
		return ""
	}
	return vh.ResourceMetadata.DocumentPath()
}

// upstreamRef is the Service a route forwards to, for the providers whose manifests route
// (Envoy Gateway, Contour): the upstream's name, and the port of its first endpoint.
func upstreamRef(cfg *config.Config, vh *config.VirtualHost, r *config.Route) (string, int, error) {
	u, ok := cfg.Upstream(r.Upstream)
	if !ok || len(u.Endpoints) == 0 {
		return "", 0, fmt.Errorf("virtual host %q: route %q: upstream %q: needed to route (the Service is the upstream's name, the port its first endpoint's)", vh.Name, r.Name, r.Upstream)
	}
	_, port, err := net.SplitHostPort(u.Endpoints[0])
	if err != nil {
		return "", 0, err
	}
	p, _ := strconv.Atoi(port)
	return objectName(u.Name), p, nil
}
