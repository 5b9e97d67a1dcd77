package translate

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/scopegate/scopegate/controlplane/config"
)

var update = flag.Bool("update", false, "rewrite testdata/out golden files from the translator's output")

// TestGolden translates each testdata/in/*.yaml and compares every fleet's resources with
// testdata/out/*.yaml. Run `go test ./controlplane/... -update` to accept a change.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/in/*.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Load(in)
			if err != nil {
				t.Fatal(err)
			}
			fleets, err := Build(context.Background(), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := renderYAML(t, fleets)
			out := filepath.Join("testdata", "out", name+".yaml")
			if *update {
				if err := os.WriteFile(out, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("%v (run go test ./controlplane/... -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the translator's output; review the diff and run go test ./controlplane/... -update\n%s",
					out, lineDiff(string(want), string(got)))
			}
		})
	}
}

// renderYAML renders fleets as YAML: fleet → versions and resources by type, each resource
// as protojson (proto field names, Anys expanded) re-encoded as block YAML.
func renderYAML(t *testing.T, fleets map[string]*Fleet) []byte {
	t.Helper()
	root := &yaml.Node{Kind: yaml.MappingNode}
	for _, name := range sortedKeys(fleets) {
		f := fleets[name]
		fleet := &yaml.Node{Kind: yaml.MappingNode}
		versions := &yaml.Node{Kind: yaml.MappingNode}
		for _, typ := range Types {
			versions.Content = append(versions.Content, scalar(typeKey(typ)), scalar(f.Versions[typ]))
		}
		fleet.Content = append(fleet.Content, scalar("versions"), versions)
		for _, typ := range Types {
			seq := &yaml.Node{Kind: yaml.SequenceNode}
			for _, r := range f.Resources[typ] {
				js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				var doc yaml.Node
				if err := yaml.Unmarshal(js, &doc); err != nil {
					t.Fatal(err)
				}
				blockStyle(doc.Content[0])
				seq.Content = append(seq.Content, doc.Content[0])
			}
			fleet.Content = append(fleet.Content, scalar(typeKey(typ)), seq)
		}
		root.Content = append(root.Content, scalar(name), fleet)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{scalar("fleets"), root}}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s} }

func blockStyle(n *yaml.Node) {
	if n.Kind != yaml.ScalarNode {
		n.Style = 0
	} else if n.Style == yaml.DoubleQuotedStyle {
		n.Style = 0
		n.Tag = "!!str"
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

func typeKey(typ resource.Type) string {
	switch typ {
	case resource.ClusterType:
		return "clusters"
	case resource.EndpointType:
		return "endpoints"
	case resource.ListenerType:
		return "listeners"
	case resource.RouteType:
		return "routes"
	case resource.SecretType:
		return "secrets"
	}
	return typ
}

// lineDiff shows the first differing lines, enough to find the change.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl + "\n")
			if shown++; shown == 10 {
				b.WriteString("...\n")
				break
			}
		}
	}
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }
