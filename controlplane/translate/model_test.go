package translate

import (
	"os"
	"reflect"
	"slices"
	"testing"
	"time"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthz "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/controlplane/translate/names"
	"github.com/scopegate/scopegate/internal/contract"
)

// TestResourcesFromModel: the builders need nothing but the model. A model written by hand
// (no config, no files) becomes resources that pass every check Envoy would make, named as
// the model says, with the route contract carried as it is.
func TestResourcesFromModel(t *testing.T) {
	cert, err := os.ReadFile("testdata/certs/tls.crt")
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile("testdata/certs/tls.key")
	if err != nil {
		t.Fatal(err)
	}
	ext := map[string]string{contract.ExtRoute: "orders", contract.ExtScopes: "orders:read"}
	m := &Model{
		Fleet:    "edge",
		ExtAuthz: ExtAuthz{Cluster: names.AuthzCluster, Timeout: time.Second, StatusOnError: 503},
		Clusters: []Cluster{
			{Name: names.AuthzCluster, Discovery: DiscoveryStatic, Socket: "/run/authz.sock", ConnectTimeout: time.Second, HTTP2: true,
				TLS: &UpstreamTLS{CASecret: names.AuthzCASecret, ServerName: "authz"}},
			{Name: "orders", Discovery: DiscoveryDNS, ConnectTimeout: time.Second, Endpoints: []Endpoint{{Host: "orders", Port: 8080}}},
		},
		Listeners: []Listener{{
			Name: "https", Address: "0.0.0.0", Port: 8443, RouteConfig: "https",
			TLS: &DownstreamTLS{CertSecret: names.ListenerSecret("https")},
			VirtualHosts: []VirtualHost{{
				Name: "api", Domains: []string{"*"},
				Metadata: &MetadataRoute{Name: names.MetadataRoute("api"), Path: "/.well-known/oauth-protected-resource",
					Document: []byte(`{"resource":"https://api.example.com"}`), CacheControl: "public, max-age=60"},
				Routes: []Route{
					{Name: "orders", Match: RouteMatch{PathKind: config.PathSeparatedPrefix, Path: "/orders"}, Cluster: "orders", Timeout: time.Second, Extensions: ext},
					{Name: "health", Match: RouteMatch{PathKind: config.PathExact, Path: "/healthz"}, Cluster: "orders", Timeout: time.Second,
						StripHeaders: contract.IdentityHeaders()},
				},
			}},
		}},
		Secrets: []Secret{
			{Name: names.AuthzCASecret, TrustedCA: cert},
			{Name: names.ListenerSecret("https"), Certificate: &Certificate{Chain: cert, Key: key}},
		},
	}
	res, err := resources(m)
	if err != nil {
		t.Fatal(err)
	}
	f := &Fleet{Name: m.Fleet, Resources: res}
	if err := f.validate(); err != nil {
		t.Fatalf("resources built from the model fail Envoy's checks: %v", err)
	}
	want := map[resource.Type][]string{
		resource.ClusterType:  {"orders", names.AuthzCluster},
		resource.EndpointType: nil, // a DNS and a static cluster: both inline
		resource.ListenerType: {"https"},
		resource.RouteType:    {"https"},
		resource.SecretType:   {"https.tls", names.AuthzCASecret},
	}
	for typ, w := range want {
		var got []string
		for _, r := range res[typ] {
			got = append(got, nameOf(r))
		}
		if !slices.Equal(got, w) {
			t.Errorf("%s: %v, want %v", TypeName(typ), got, w)
		}
	}
	routes := res[resource.RouteType][0].(*route.RouteConfiguration).GetVirtualHosts()[0].GetRoutes()
	if len(routes) != 3 || routes[0].GetName() != "api.resource-metadata" || routes[0].GetDirectResponse() == nil {
		t.Fatalf("routes %v: want the metadata route first, answered by Envoy", routes)
	}
	per := &extauthz.ExtAuthzPerRoute{}
	if err := routes[1].GetTypedPerFilterConfig()[names.ExtAuthzFilter].UnmarshalTo(per); err != nil {
		t.Fatal(err)
	}
	if got := per.GetCheckSettings().GetContextExtensions(); !reflect.DeepEqual(got, ext) {
		t.Errorf("context extensions %v, want the model's %v", got, ext)
	}
	if got := routes[2].GetRequestHeadersToRemove(); !slices.Equal(got, contract.IdentityHeaders()) {
		t.Errorf("public route strips %v, want the identity headers", got)
	}
}

// TestResolve: the model of a config has every name from package names, authz's cluster
// first and then only the upstreams the fleet's routes use, each protected route's contract
// as config.VirtualHost.RouteExtensions computes it, and every secret read and checked.
func TestResolve(t *testing.T) {
	cfg := load(t, "testdata/in/client-certs.yaml")
	cfg.Upstreams = append(cfg.Upstreams, config.Upstream{Name: "unused", Endpoints: []string{"10.0.0.9:80"}, ConnectTimeout: time.Second})
	m, err := resolve(cfg, &cfg.Fleets[0], newFileCache(os.ReadFile))
	if err != nil {
		t.Fatal(err)
	}
	var clusters []string
	for _, c := range m.Clusters {
		clusters = append(clusters, c.Name)
	}
	if !slices.Equal(clusters, []string{names.AuthzCluster, "api"}) {
		t.Errorf("clusters %v, want authz's then api's (unused upstreams are not sent)", clusters)
	}
	if c := m.Clusters[1]; c.Discovery != DiscoveryDNS || !slices.Equal(c.Endpoints, []Endpoint{{Host: "api", Port: 8081}}) {
		t.Errorf("api cluster %+v, want api:8081 resolved by DNS", c)
	}
	l := m.Listeners[0]
	if l.TLS == nil || l.TLS.CertSecret != names.ListenerSecret("https") || l.TLS.ClientCASecret != names.ClientCASecret("https") || !l.TLS.RequireClientCertificate {
		t.Errorf("listener TLS %+v", l.TLS)
	}
	var secrets []string
	for _, s := range m.Secrets {
		if (s.Certificate == nil) == (s.TrustedCA == nil) {
			t.Errorf("secret %s: want a certificate or a CA, not both or neither", s.Name)
		}
		secrets = append(secrets, s.Name)
	}
	if !slices.Equal(secrets, []string{"https.tls", "https.client-ca"}) {
		t.Errorf("secrets %v", secrets)
	}
	vh := &cfg.Fleets[0].Listeners[0].VirtualHosts[0]
	for i, r := range l.VirtualHosts[0].Routes {
		if want := vh.RouteExtensions(&vh.Routes[i]); !reflect.DeepEqual(r.Extensions, want) {
			t.Errorf("route %s: extensions %v, want %v", r.Name, r.Extensions, want)
		}
	}
	if admin, root := l.VirtualHosts[0].Routes[0], l.VirtualHosts[0].Routes[1]; admin.Extensions == nil || root.Extensions != nil || !slices.Equal(root.StripHeaders, cfg.Authz.IdentityHeaders) {
		t.Errorf("admin %+v, root %+v: want admin protected, root public stripping the identity headers", admin, root)
	}
}
