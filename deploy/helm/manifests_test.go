package helm

import (
	"bytes"
	"flag"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/scopegate/scopegate/internal/testing/golden"
)

var update = flag.Bool("update", false, "rewrite deploy/kubernetes from the chart")

// plainManifests are the kubectl-ready files in deploy/kubernetes: the chart rendered with
// release name and namespace "scopegate".
var plainManifests = []struct{ file, values, command string }{
	{"scopegate.yaml", "", "helm template scopegate deploy/helm/scopegate --namespace scopegate"},
	{"scopegate-envoy.yaml", "envoy: {enabled: true}", "helm template scopegate deploy/helm/scopegate --namespace scopegate --set envoy.enabled=true"},
}

// TestPlainManifests regenerates deploy/kubernetes and fails on drift; -update rewrites it.
// The objects are decoded strictly and pass TestChart's security and Service checks.
func TestPlainManifests(t *testing.T) {
	c := loadChart(t)
	for _, m := range plainManifests {
		var vals map[string]any
		if err := yaml.Unmarshal([]byte(m.values), &vals); err != nil {
			t.Fatal(err)
		}
		manifest, err := render(c, "scopegate", "scopegate", vals)
		if err != nil {
			t.Fatal(err)
		}
		r := decode(t, manifest, "scopegate") // strictly, as TestChart does
		checkSecurity(t, r)
		checkServices(t, r)
		var buf bytes.Buffer
		buf.WriteString("# scopegate for kubectl: rendered from the Helm chart, do not edit. The same as:\n")
		buf.WriteString("#   " + m.command + "\n")
		buf.WriteString("# Regenerate: go test ./deploy/helm -run TestPlainManifests -update\n")
		buf.WriteString("# Apply:      kubectl create namespace scopegate && kubectl apply -f deploy/kubernetes/" + m.file + "\n")
		buf.WriteString(manifest)
		path := filepath.Join("..", "kubernetes", m.file)
		have, ok := golden.Want(t, path, buf.Bytes(), *update, "go test ./deploy/helm -run TestPlainManifests -update")
		if ok && !bytes.Equal(have, buf.Bytes()) {
			t.Errorf("%s differs from the chart's rendering: run go test ./deploy/helm -run TestPlainManifests -update and review the diff", path)
		}
	}
}
