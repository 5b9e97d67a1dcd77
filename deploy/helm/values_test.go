package helm

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestValuesRefused: a wrong type, an unknown key or a combination the chart can't serve
// fails the install with a message naming the value, before anything reaches a cluster.
func TestValuesRefused(t *testing.T) {
	c := loadChart(t)
	tests := []struct{ name, values, wantErr string }{
		{"replicas as a word", "authz: {replicas: two}", "replicas"},
		{"replicas as a quoted number", `authz: {replicas: "2"}`, "replicas"},
		{"unknown top-level key", "replicas: 2", "replicas"},
		{"unknown key under authz", "authz: {replica: 2}", "replica"},
		{"unknown mode", "authz: {mode: daemonset}", "mode"},
		{"listen is the chart's", "authz: {config: {listen: ':1', issuers: [{name: a}]}}", "listen"},
		{"no issuers", "authz: {config: {issuers: []}}", "issuers"},
		{"port out of range", "xds: {ports: {grpc: 70000, admin: 18001}}", "grpc"},
		{"sidecar without Envoy", "authz: {mode: sidecar}", "set envoy.enabled: true"},
		{"Envoy fleet not configured", "envoy: {enabled: true, fleet: internal}", `envoy.fleet: "internal" is not a fleet`},
		{"cert-manager without an issuer", "tls: {enabled: true}\ncertManager: {enabled: true}", "certManager.issuerRef.name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var vals map[string]any
			if err := yaml.Unmarshal([]byte(tt.values), &vals); err != nil {
				t.Fatal(err)
			}
			_, err := render(c, releaseName, namespace, vals)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one naming %q", err, tt.wantErr)
			}
		})
	}
	// The same values, corrected, render: the refusals above are about the value named.
	for _, ok := range []string{"authz: {replicas: 2}", "authz: {mode: sidecar}\nenvoy: {enabled: true}"} {
		var vals map[string]any
		if err := yaml.Unmarshal([]byte(ok), &vals); err != nil {
			t.Fatal(err)
		}
		if _, err := render(c, releaseName, namespace, vals); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}
