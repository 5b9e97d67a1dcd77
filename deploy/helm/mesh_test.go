package helm

import (
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	xdsconfig "github.com/scopegate/scopegate/controlplane/config"
	meshrender "github.com/scopegate/scopegate/controlplane/render"
	authzconfig "github.com/scopegate/scopegate/extauthz/config"
)

// TestMeshMode: mode: mesh deploys authz alone (no xds, no Envoy), its route table from a
// ConfigMap mounted where routes_file points, reloadable; only mesh.peers may call it; the
// manifests scopegate render made are added as they are.
func TestMeshMode(t *testing.T) {
	c := loadChart(t)
	vals := valuesFile(t, filepath.Join(chartDir, "ci", "mesh-values.yaml"))
	m, err := render(c, releaseName, namespace, vals)
	if err != nil {
		t.Fatal(err)
	}
	r := decode(t, m, namespace)
	checkSecurity(t, r)
	checkServices(t, r)
	if r.deployment("xds") != nil || r.deployment("envoy") != nil || r.configMaps[releaseName+"-scopegate-xds"] != nil {
		t.Fatal("mesh mode renders xds or Envoy")
	}
	d := r.deployment("authz")
	if d == nil || r.service(releaseName+"-scopegate-authz") == nil {
		t.Fatal("mesh mode without the authz Deployment and Service")
	}

	// The routes ConfigMap is mounted where routes_file points; both files load.
	authzYAML := configFile(t, r, releaseName+"-scopegate-authz", "authz.yaml")
	var declared struct {
		RoutesFile string `json:"routes_file"`
		Unmatched  string `json:"unmatched"`
	}
	if err := yaml.Unmarshal(authzYAML, &declared); err != nil {
		t.Fatal(err)
	}
	pod := &d.Spec.Template.Spec
	mounted := ""
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == releaseName+"-scopegate-authz-routes" {
			for _, mnt := range container(pod, "authz").VolumeMounts {
				if mnt.Name == v.Name {
					mounted = mnt.MountPath
				}
			}
		}
	}
	if declared.Unmatched != "deny" || mounted == "" || filepath.Dir(declared.RoutesFile) != mounted {
		t.Fatalf("routes_file %q (unmatched %q), the routes ConfigMap is mounted at %q", declared.RoutesFile, declared.Unmatched, mounted)
	}
	cm := r.configMaps[releaseName+"-scopegate-authz-routes"]
	mount := filepath.Join(t.TempDir(), "routes")
	kubeletMount(t, mount, cm.Data, []corev1.KeyToPath{{Key: "xds.yaml", Path: "xds.yaml"}})
	file := filepath.Join(mount, filepath.Base(declared.RoutesFile))
	tb, err := authzconfig.LoadRouteTable(file)
	if err != nil {
		t.Fatalf("the routes ConfigMap does not load: %v", err)
	}
	if _, n := tb.Len(); n != 2 {
		t.Fatalf("route table: %d routes, want the 2 of mesh.routes", n)
	}
	cfg, err := authzconfig.Parse([]byte(strings.Replace(string(authzYAML), declared.RoutesFile, file, 1)))
	if err != nil {
		t.Fatalf("authz config does not load: %v\n%s", err, authzYAML)
	}
	if !cfg.HasRouteTable() || cfg.Unmatched != authzconfig.UnmatchedDeny {
		t.Fatalf("authz config: %+v", cfg)
	}

	// Only the mesh's peers reach authz's gRPC port.
	var authzPolicy *networkingv1.NetworkPolicy
	for _, p := range r.policies {
		if p.Name == releaseName+"-scopegate-authz" {
			authzPolicy = p
		}
		if strings.Contains(p.Name, "xds") || strings.Contains(p.Name, "envoy") {
			t.Errorf("mesh mode renders NetworkPolicy %s", p.Name)
		}
	}
	if authzPolicy == nil || len(authzPolicy.Spec.Ingress) == 0 || len(authzPolicy.Spec.Ingress[0].From) != 1 ||
		authzPolicy.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "istio-system" {
		t.Fatalf("authz NetworkPolicy does not admit mesh.peers: %+v", authzPolicy)
	}

	// The provider manifests go into the release unchanged.
	mesh, err := xdsconfig.LoadRoutes("../../examples/mesh/xds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	manifests, err := meshrender.Istio(mesh, meshrender.Options{Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	vals["mesh"].(map[string]any)["providerManifests"] = string(manifests)
	m, err = render(c, releaseName, namespace, vals)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m, strings.TrimSpace(string(manifests))) {
		t.Fatal("the provider manifests are not in the release as rendered")
	}

	for _, bad := range []struct{ key, want string }{{"envoy", "set envoy.enabled: false"}, {"authz", "set authz.mode: deployment"}} {
		v := valuesFile(t, filepath.Join(chartDir, "ci", "mesh-values.yaml"))
		if bad.key == "envoy" {
			v["envoy"] = map[string]any{"enabled": true}
		} else {
			v["authz"] = map[string]any{"mode": "sidecar"}
		}
		if _, err := render(c, releaseName, namespace, v); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("mode: mesh with %s: %v", bad.key, err)
		}
	}
}
