package controlplane

import (
	"maps"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/scopegate/scopegate/internal/testing/envoysim"
)

// TestReplicasServeIdenticalVersions: two control planes, one config, identical version
// strings. Replicas behind one Service (the Helm chart runs two) each build their snapshots
// from the same mounted ConfigMap; an Envoy that reconnects to another replica must be
// offered the versions it already holds, or every reconnect would re-push (and drain
// listeners on) the whole fleet. A third control plane with one scope changed shows the
// versions follow content, so the comparison could fail.
func TestReplicasServeIdenticalVersions(t *testing.T) {
	certs := t.TempDir()
	certFile, keyFile := writeCert(t, certs, "edge.example")
	tls := "        port: 10000\n        tls: {cert_file: " + certFile + ", key_file: " + keyFile + "}\n"
	// Plaintext ADS in this test: pushing the listener key needs the development switch.
	withTLS := func(cfg string) string {
		return "insecure_plaintext_secrets: true\n" + strings.Replace(cfg, "        port: 10000\n", tls, 1)
	}
	cfg := withTLS(testConfig(cfgOpt{more: true}))
	if !strings.Contains(cfg, filepath.Base(certFile)) {
		t.Fatal("the TLS listener was not added to the config")
	}

	a, b := start(t, cfg), start(t, cfg)
	changed := start(t, withTLS(testConfig(cfgOpt{more: true, scope: "orders:list"})))

	types := []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.SecretType}
	wire := func(h *harness, id string, delta bool) map[string]string {
		t.Helper()
		c := h.sotw(id, "edge", envoysim.Options{})
		if delta {
			c = h.delta(id, "edge", envoysim.Options{})
		}
		h.waitHolds(c, "edge", types...)
		out := map[string]string{}
		for _, typ := range types {
			out[typ] = c.Version(typ)
		}
		return out
	}
	for _, delta := range []bool{false, true} {
		fromA, fromB := wire(a, "edge-a", delta), wire(b, "edge-b", delta)
		for _, typ := range types {
			if fromA[typ] == "" || fromA[typ] != fromB[typ] {
				t.Errorf("delta=%v %s: replica A sent version %q, replica B %q", delta, typ, fromA[typ], fromB[typ])
			}
		}
	}
	for _, fleet := range []string{"edge", "internal"} {
		va, vb := a.versions(fleet), b.versions(fleet)
		if !maps.Equal(va, vb) {
			t.Errorf("fleet %s: snapshot versions differ between replicas:\n%v\n%v", fleet, va, vb)
		}
	}
	vc := changed.versions("edge")
	if va := a.versions("edge"); va[resource.RouteType] == vc[resource.RouteType] {
		t.Errorf("a changed scope left the route version at %s: versions do not follow content", va[resource.RouteType])
	} else if va[resource.ClusterType] != vc[resource.ClusterType] {
		t.Errorf("a route-only change moved the cluster version: %s -> %s", va[resource.ClusterType], vc[resource.ClusterType])
	}
}
