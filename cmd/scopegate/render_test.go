package main

import (
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// Every `scopegate render` command docs/mesh.md shows runs as written (from the repository
// root; a shell redirect is left to the shell) and prints YAML.
func TestMeshDocCommands(t *testing.T) {
	doc, err := os.ReadFile("../../docs/mesh.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "scopegate render ") {
			continue
		}
		line, _, _ = strings.Cut(line, " > ")
		args := strings.Fields(strings.TrimPrefix(line, "scopegate "))
		for i, a := range args {
			args[i] = strings.Trim(strings.ReplaceAll(a, "examples/", "../../examples/"), "'")
		}
		out, stderr, code := runCode(t, args...)
		if code != 0 {
			t.Errorf("%s: exit %d: %s", line, code, stderr)
			continue
		}
		for _, d := range strings.Split(out, "\n---\n") {
			var v map[string]any
			if err := yaml.Unmarshal([]byte(d), &v); err != nil || len(v) == 0 {
				t.Errorf("%s: a document is not YAML (%v):\n%s", line, err, d)
			}
		}
		n++
	}
	if n < 4 {
		t.Fatalf("found %d scopegate render commands in docs/mesh.md", n)
	}
}

func TestRenderRefusals(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"render", "nginx", "--config", "../../examples/mesh/xds.yaml"}, "unknown provider"},
		{[]string{"render", "istio", "--config", "../../examples/mesh/xds.yaml", "--selector", "istio"}, "want key=value"},
		{[]string{"render", "istio", "--mesh-config", "--config", "../../examples/mesh/xds.yaml", "--authz-service", "authz"}, "--authz-service"},
		{[]string{"render", "istio", "--config", "../../controlplane/translate/testdata/in/basic.yaml", "--peer-certificate", "maybe"}, "want auto, true or false"},
		{[]string{"render", "contour", "--config", "../../controlplane/translate/testdata/in/matchers.yaml"}, `domain "*"`},
	} {
		_, stderr, code := runCode(t, tc.args...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want an error containing %q", tc.args, code, stderr, tc.want)
		}
	}
}
