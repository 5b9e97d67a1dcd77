package lint

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	xdsconfig "github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/extauthz/policy"
)

var update = flag.Bool("update", false, "rewrite the golden findings")

func load(t *testing.T, xdsFile, policyDir, clientsFile string) Inputs {
	t.Helper()
	x, err := xdsconfig.Load(xdsFile)
	if err != nil {
		t.Fatal(err)
	}
	b, err := policy.Load(policyDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := Inputs{XDSFile: xdsFile, XDS: x, Policy: b, GrantsFile: clientsFile}
	if clientsFile != "" {
		if in.Grants, err = LoadClients(clientsFile); err != nil {
			t.Fatal(err)
		}
	}
	return in
}

func TestFixture(t *testing.T) {
	for _, tc := range []struct{ name, clients string }{
		{"findings", "testdata/clients.yaml"},
		{"findings-without-idp", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := Run(load(t, "testdata/xds.yaml", "testdata/policy", tc.clients))
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

// The shipped demo configuration is clean (its grants are checked in cmd/scopegate, which
// reads the demo IdP's config).
func TestDemoIsClean(t *testing.T) {
	fs, err := Run(load(t, "../../compose/xds.local.yaml", "../../policies", ""))
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

// A clients file: read into grants, or refused with the file and the field named.
func TestLoadClients(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, body, wantErr string }{
		{"ok", "clients:\n  - id: a\n    scopes: [x, y]\n  - id: b\n", ""},
		{"no clients", "clients: []\n", "clients: at least one client is required"},
		{"no id", "clients:\n  - scopes: [x]\n", "clients[0].id: required"},
		{"twice", "clients:\n  - id: a\n  - id: a\n", `clients[1].id: "a" is listed twice`},
		{"empty scope", "clients:\n  - id: a\n    scopes: [x, \"\"]\n", "clients[0].scopes[1]: empty scope"},
		{"unknown field", "clients:\n  - id: a\n    scope: [x]\n", "scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".yaml")
			if err := os.WriteFile(p, []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			grants, err := LoadClients(p)
			if tc.wantErr == "" {
				want := []Grant{{Who: "a", Scopes: []string{"x", "y"}}, {Who: "b"}}
				if err != nil || !cmp.Equal(grants, want) {
					t.Fatalf("grants %+v, error %v; want %+v", grants, err, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %v; want one naming %s and %q", err, p, tc.wantErr)
			}
		})
	}
}
