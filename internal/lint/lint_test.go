package lint

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	xdsconfig "github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/idp"
)

var update = flag.Bool("update", false, "rewrite the golden findings")

func load(t *testing.T, xdsFile, policyDir, idpFile string) Inputs {
	t.Helper()
	x, err := xdsconfig.Load(xdsFile)
	if err != nil {
		t.Fatal(err)
	}
	b, err := policy.Load(policyDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := Inputs{XDSFile: xdsFile, XDS: x, Policy: b, IdPFile: idpFile}
	if idpFile != "" {
		if in.IdP, err = idp.Load(idpFile); err != nil {
			t.Fatal(err)
		}
	}
	return in
}

func TestFixture(t *testing.T) {
	for _, tc := range []struct{ name, idp string }{
		{"findings", "testdata/idp.yaml"},
		{"findings-without-idp", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := Run(load(t, "testdata/xds.yaml", "testdata/policy", tc.idp))
			if err != nil {
				t.Fatal(err)
			}
			if !HasErrors(fs) {
				t.Fatal("the fixture has errors; none found")
			}
			var out bytes.Buffer
			if err := Write(&out, fs); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join("testdata", tc.name+".txt")
			if *update {
				if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if diff := cmp.Diff(string(want), out.String()); diff != "" {
				t.Fatalf("findings differ (-want +got):\n%s", diff)
			}
		})
	}
}

// The shipped demo configuration is clean.
func TestDemoIsClean(t *testing.T) {
	fs, err := Run(load(t, "../../compose/xds.local.yaml", "../../policies", "../../compose/idp.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 0 {
		var out bytes.Buffer
		_ = Write(&out, fs)
		t.Fatalf("findings on the demo:\n%s", out.String())
	}
}

func TestOverlaps(t *testing.T) {
	m := func(prefix, path string, methods ...string) xdsconfig.Match {
		return xdsconfig.Match{Prefix: prefix, Path: path, Methods: methods}
	}
	for _, tc := range []struct {
		name string
		a, b xdsconfig.Match
		want bool
	}{
		{"nested prefixes", m("/orders", ""), m("/orders/docs", ""), true},
		{"string prefix, not segment", m("/order", ""), m("/orders", ""), true},
		{"disjoint prefixes", m("/orders", ""), m("/admin", ""), false},
		{"path under prefix", m("/admin", ""), m("", "/admin/status"), true},
		{"path outside prefix", m("/admin", ""), m("", "/healthz"), false},
		{"equal paths", m("", "/a"), m("", "/a"), true},
		{"methods disjoint", m("/orders", "", "GET"), m("/orders", "", "POST"), false},
		{"methods meet", m("/orders", "", "GET", "POST"), m("/orders", "", "post"), true},
		{"any method", m("/orders", ""), m("/orders", "", "DELETE"), true},
	} {
		if got := overlaps(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: overlaps = %v, want %v", tc.name, got, tc.want)
		}
	}
}
