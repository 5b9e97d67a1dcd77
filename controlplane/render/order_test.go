package render

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/scopegate/scopegate/controlplane/config"
	authzconfig "github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/routes"
)

// Gateway API and Contour order routes by specificity: a file whose order they would change
// (a route behind a less specific one that overlaps it) is refused, naming both routes; so
// is a matcher the provider can't express.
func TestProviderOrderRefused(t *testing.T) {
	cfg, err := config.LoadRoutes("../translate/testdata/in/matchers.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// orders-v2 (a header) before orders-write (methods): Gateway API tries a method first.
	if _, err := EnvoyGateway(cfg, Options{}); err == nil ||
		!strings.Contains(err.Error(), `route "orders-write" comes after route "orders-v2"`) ||
		!strings.Contains(err.Error(), `domain "legacy.*": Gateway API hostnames take only a leading "*." wildcard`) {
		t.Errorf("envoy-gateway: %v", err)
	}
	if _, err := Contour(cfg, Options{}); err == nil || !strings.Contains(err.Error(), `domain "*": an HTTPProxy's fqdn is a host name`) ||
		strings.Contains(err.Error(), "comes after") {
		t.Errorf("contour: %v", err)
	}
	shadowed := `
fleets:
  - name: f
    listeners:
      - name: l
        virtual_hosts:
          - name: api
            domains: [api.example.com]
            routes:
              - {name: all, match: {prefix: /orders}, upstream: u, scopes: [read]}
              - {name: admin, match: {path: /orders/admin}, upstream: u, scopes: [admin]}
upstreams: [{name: u, endpoints: ["u:80"]}]
`
	cfg, err = config.ParseRoutes("shadowed.yaml", []byte(shadowed))
	if err != nil {
		t.Fatal(err)
	}
	for name, render := range map[string]func(*config.Config, Options) ([]byte, error){"envoy-gateway": EnvoyGateway, "contour": Contour} {
		if _, err := render(cfg, Options{}); err == nil || !strings.Contains(err.Error(), `route "admin" comes after route "all"`) {
			t.Errorf("%s: %v", name, err)
		}
	}
	inverted := strings.Replace(shadowed, "{name: all, match: {prefix: /orders}", "{name: all, match: {prefix: /orders, headers: [{name: x-a, regex: v, invert: true}]}", 1)
	inverted = strings.Replace(inverted, "{path: /orders/admin}", "{path: /other}", 1)
	if cfg, err = config.ParseRoutes("inverted.yaml", []byte(inverted)); err != nil {
		t.Fatal(err)
	}
	if _, err := EnvoyGateway(cfg, Options{}); err == nil || !strings.Contains(err.Error(), `route "all": header "x-a": Gateway API has no inverted`) {
		t.Errorf("envoy-gateway, inverted header: %v", err)
	}
	if _, err := Contour(cfg, Options{}); err == nil || !strings.Contains(err.Error(), `route "all": header "x-a": Contour has no inverted prefix, suffix or regex match`) {
		t.Errorf("contour, inverted header: %v", err)
	}
}

// istioSelects is Istio's operation matching (hosts case-insensitive, exact or one "*" at
// either end; paths exact, "prefix*", "*suffix" or "*"; notPaths excluding).
func istioSelects(op apOperation, host, path string) bool {
	match := func(pattern, v string, fold bool) bool {
		if fold {
			pattern, v = strings.ToLower(pattern), strings.ToLower(v)
		}
		switch {
		case pattern == "*":
			return true
		case strings.HasSuffix(pattern, "*"):
			return strings.HasPrefix(v, strings.TrimSuffix(pattern, "*"))
		case strings.HasPrefix(pattern, "*"):
			return strings.HasSuffix(v, strings.TrimPrefix(pattern, "*"))
		}
		return pattern == v
	}
	any := func(patterns []string, v string, fold bool) bool {
		for _, p := range patterns {
			if match(p, v, fold) {
				return true
			}
		}
		return false
	}
	path, _, _ = strings.Cut(path, "?")
	return (len(op.Hosts) == 0 || any(op.Hosts, host, true)) &&
		(len(op.Paths) == 0 || any(op.Paths, path, false)) && !any(op.NotPaths, path, false)
}

// The AuthorizationPolicy sends authz every request that would take a protected route (or
// the metadata document authz answers), as authz's own table (the same file) finds it; and a
// public route no protected route overlaps never reaches authz.
func TestIstioPolicyCoversProtectedRoutes(t *testing.T) {
	for _, in := range []string{"../../examples/mesh/xds.yaml", "../translate/testdata/in/matchers.yaml"} {
		cfg, err := config.LoadRoutes(in)
		if err != nil {
			t.Fatal(err)
		}
		var ap authorizationPolicy
		out := renderAs(t, "istio", cfg)
		doc, _, _ := strings.Cut(string(out), "\n---\n")
		if err := yaml.Unmarshal([]byte(doc), &ap); err != nil {
			t.Fatal(err)
		}
		tb, err := routes.New(authzconfig.TableInputs(cfg.MeshVirtualHosts()))
		if err != nil {
			t.Fatal(err)
		}
		hosts := []string{"orders.example.com", "ORDERS.example.com:443", "x.reports.example.com", "reports.example.com", "api.example.com",
			"api.example.com:8443", "ops-internal.example.com", "a.example.com", "legacy.example.net", "other.test"}
		paths := []string{"/", "/orders", "/orders/1", "/orders/admin", "/healthz", "/HEALTHZ", "/reports", "/reports/x", "/REPORTS/q",
			"/items/1", "/items/1/reviews", "/beta/x", "/t/1", "/v1/x", "/x", "/.well-known/oauth-protected-resource"}
		headerSets := []map[string]string{nil, {"x-api-version": "2"}, {"x-beta": "1"},
			{"x-tenant": "abc-1", "x-tenant-tier": "gold", "x-region": "a-eu"}}
		sent, public := 0, 0
		for _, h := range hosts {
			for _, p := range paths {
				for _, m := range []string{"GET", "POST"} {
					for _, hs := range headerSets {
						selected := false
						for _, r := range ap.Spec.Rules {
							selected = selected || istioSelects(r.To[0].Operation, h, p)
						}
						match := tb.Match(h, p, m, hs)
						switch {
						case match != nil && !match.Public() && !selected:
							t.Fatalf("%s: %s %s%s %v takes protected route %q, but the AuthorizationPolicy does not send it to authz", in, m, h, p, hs, match.Name)
						case match != nil && match.Public() && !selected:
							public++
						case selected:
							sent++
						}
					}
				}
			}
		}
		if sent == 0 || (in == "../../examples/mesh/xds.yaml" && public == 0) {
			t.Fatalf("%s: %d sent, %d public left out", in, sent, public)
		}
	}
}
