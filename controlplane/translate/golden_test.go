package translate

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/internal/yamlfile"

	"github.com/scopegate/scopegate/internal/testing/golden"
)

var update = flag.Bool("update", false, "rewrite testdata/out golden files from the translator's output")

// TestGolden translates each testdata/in/<case>.yaml and compares every fleet's resources of
// each type, with the type's content version, with testdata/out/<case>/<type>.yaml
// (clusters, endpoints, listeners, routes, secrets). Run `go test ./controlplane/translate/
// -update` to accept a change.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/in/*.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	cases := map[string]bool{}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		cases[name] = true
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Load(in)
			if err != nil {
				t.Fatal(err)
			}
			fleets := build(t, cfg)
			dir := filepath.Join("testdata", "out", name)
			if *update {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			var files []string
			for _, typ := range Types {
				file := TypeName(typ) + ".yaml"
				files = append(files, file)
				out := filepath.Join(dir, file)
				got := renderType(t, fleets, typ)
				want, ok := golden.Want(t, out, got, *update, "go test ./controlplane/translate/ -update")
				if !ok {
					continue
				}
				if d := goldenDiff(want, got, fleets, typ); d != "" {
					t.Errorf("%s differs from the translator's output; review the diff (-golden +translator) and run go test ./controlplane/translate/ -update\n%s", out, d)
				}
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if !slices.Contains(files, e.Name()) {
					t.Errorf("%s: a file the translator does not write (run go test ./controlplane/translate/ -update)", filepath.Join(dir, e.Name()))
				}
			}
		})
	}
	// An output without an input is stale: its case was renamed or removed.
	entries, err := os.ReadDir(filepath.Join("testdata", "out"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch {
		case !e.IsDir():
			t.Errorf("testdata/out/%s: not a case's directory (the translator writes testdata/out/<case>/<type>.yaml): remove it", e.Name())
		case !cases[e.Name()]:
			t.Errorf("testdata/out/%s has no input testdata/in/%s.yaml: remove it", e.Name(), e.Name())
		}
	}
}

// renderType renders one resource type of every fleet as YAML: fleet → the type's content
// version and its resources, each as protojson (proto field names, Anys expanded) re-encoded
// as block YAML.
func renderType(t *testing.T, fleets map[string]*Fleet, typ resource.Type) []byte {
	t.Helper()
	root := &yaml.Node{Kind: yaml.MappingNode}
	for _, name := range sortedKeys(fleets) {
		f := fleets[name]
		fleet := &yaml.Node{Kind: yaml.MappingNode}
		fleet.Content = append(fleet.Content, scalar("version"), scalar(f.Versions[typ]), scalar("resources"), resourcesNode(t, f.Resources[typ]))
		root.Content = append(root.Content, scalar(name), fleet)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func resourcesNode(t *testing.T, rs []types.Resource) *yaml.Node {
	t.Helper()
	seq := &yaml.Node{Kind: yaml.SequenceNode}
	for _, r := range rs {
		n, err := yamlfile.ProtoNode(r)
		if err != nil {
			t.Fatal(err)
		}
		seq.Content = append(seq.Content, n)
	}
	return seq
}

func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s} }

// goldenFleet is one fleet's resources of one type, as a golden file holds them.
type goldenFleet struct {
	Version   string
	Resources []proto.Message
}

// goldenDiff says how a golden file and the translator's output differ ("" when they do
// not): a protocmp diff of the resources decoded from the file and the translator's (and of
// the versions), or, when those are the same messages laid out differently, the first
// differing lines. Decoding runs on every comparison, so a golden file that no longer decodes
// into its resource type fails too.
func goldenDiff(want, got []byte, fleets map[string]*Fleet, typ resource.Type) string {
	wantFleets, err := decodeGolden(want, typ)
	if err != nil {
		return "the golden file does not decode into " + typ + " (" + err.Error() + "); first differing lines:\n" + lineDiff(string(want), string(got))
	}
	gotFleets := map[string]goldenFleet{}
	for name, f := range fleets {
		g := goldenFleet{Version: f.Versions[typ]}
		for _, r := range f.Resources[typ] {
			g.Resources = append(g.Resources, r)
		}
		gotFleets[name] = g
	}
	if d := cmp.Diff(wantFleets, gotFleets, protocmp.Transform(), cmpopts.EquateEmpty()); d != "" {
		return d
	}
	if !bytes.Equal(want, got) {
		return "the same resources, laid out differently; first differing lines:\n" + lineDiff(string(want), string(got))
	}
	return ""
}

// decodeGolden reads a golden file back into messages of type typ: each resource's YAML as
// JSON, then protojson.
func decodeGolden(data []byte, typ resource.Type) (map[string]goldenFleet, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(typ)
	if err != nil {
		return nil, err
	}
	var doc map[string]struct {
		Version   yaml.Node   `yaml:"version"`
		Resources []yaml.Node `yaml:"resources"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	out := map[string]goldenFleet{}
	for name, f := range doc {
		g := goldenFleet{Version: f.Version.Value}
		for i := range f.Resources {
			var v any
			if err := f.Resources[i].Decode(&v); err != nil {
				return nil, err
			}
			js, err := json.Marshal(v)
			if err != nil {
				return nil, err
			}
			m := mt.New().Interface()
			if err := protojson.Unmarshal(js, m); err != nil {
				return nil, err
			}
			g.Resources = append(g.Resources, m)
		}
		out[name] = g
	}
	return out, nil
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
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl + "\n")
			if shown++; shown == 10 {
				b.WriteString("...\n")
				break
			}
		}
	}
	return b.String()
}
