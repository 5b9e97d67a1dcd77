package bootstrap

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/internal/testing/golden"
)

var update = flag.Bool("update", false, "rewrite the checked-in bootstraps in envoy/")

const envoyDir = "../../envoy"

// Checked-in bootstraps: the compose demo's and the one for local runs. Each is exactly what
// `scopegate bootstrap` prints for its options.
var checkedIn = []struct {
	file string
	opts Options
}{
	{"bootstrap-compose.yaml", Options{NodeID: "edge-demo", Fleet: "edge", XDS: "xds:18000", AdminPort: 9901,
		XDSCA: "/certs/ca.crt", XDSCert: "/certs/envoy.crt", XDSKey: "/certs/envoy.key", XDSServerName: "xds"}},
	{"bootstrap-local.yaml", Options{NodeID: "edge-local", Fleet: "edge", XDS: "127.0.0.1:18000", AdminPort: 9901,
		XDSCA: "dev-certs/ca.crt", XDSCert: "dev-certs/envoy.crt", XDSKey: "dev-certs/envoy.key", XDSServerName: "xds"}},
}

// TestCheckedInBootstraps regenerates every bootstrap in envoy/ and fails on drift.
func TestCheckedInBootstraps(t *testing.T) {
	for _, tt := range checkedIn {
		t.Run(tt.file, func(t *testing.T) {
			got, err := Render(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(envoyDir, tt.file)
			want, ok := golden.Want(t, path, got, *update, "go test ./controlplane/bootstrap -update")
			if ok && !bytes.Equal(got, want) {
				t.Errorf("%s has drifted from `%s`; regenerate with go test ./controlplane/bootstrap -update", path, Command(tt.opts))
			}
		})
	}
}

// TestEnvoyDirParses: every YAML in envoy/ parses into a Bootstrap (protojson, strict, with
// the extension types linked in) and passes validation, typed configs included.
func TestEnvoyDirParses(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(envoyDir, "*.yaml"))
	if err != nil || len(files) < len(checkedIn) {
		t.Fatalf("envoy/ holds %v (%v)", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			if b.GetNode().GetCluster() == "" || b.GetDynamicResources().GetAdsConfig() == nil {
				t.Errorf("%s: no fleet (node.cluster) or no ADS config", f)
			}
			if a := b.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); a != "127.0.0.1" {
				t.Errorf("%s: admin bound to %q, want 127.0.0.1", f, a)
			}
		})
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		check   func(t *testing.T, y string)
		wantErr string
	}{
		{name: "sotw by name", opts: Options{NodeID: "n1", Fleet: "edge", XDS: "xds:18000"}, check: func(t *testing.T, y string) {
			for _, s := range []string{"api_type: GRPC", "type: STRICT_DNS", "cluster: edge", "id: n1", "port_value: 9901", "address: xds", "transport_api_version: V3", "resource_api_version: V3", "http2_protocol_options"} {
				if !strings.Contains(y, s) {
					t.Errorf("missing %q", s)
				}
			}
		}},
		{name: "delta by IP", opts: Options{NodeID: "n1", Fleet: "edge", XDS: "10.0.0.1:18000", AdminPort: 9000, Delta: true}, check: func(t *testing.T, y string) {
			for _, s := range []string{"api_type: DELTA_GRPC", "type: STATIC", "port_value: 9000", "--delta"} {
				if !strings.Contains(y, s) {
					t.Errorf("missing %q", s)
				}
			}
		}},
		{name: "mutual TLS by name", opts: Options{NodeID: "n1", Fleet: "edge", XDS: "xds:18000", XDSCA: "/c/ca.crt", XDSCert: "/c/envoy.crt", XDSKey: "/c/envoy.key"}, check: func(t *testing.T, y string) {
			for _, s := range []string{"name: envoy.transport_sockets.tls", "filename: /c/ca.crt", "filename: /c/envoy.crt", "filename: /c/envoy.key",
				"san_type: DNS", "exact: xds", "sni: xds", "- h2", "tls_minimum_protocol_version: TLSv1_2", "--xds-ca /c/ca.crt --xds-cert /c/envoy.crt --xds-key /c/envoy.key"} {
				if !strings.Contains(y, s) {
					t.Errorf("missing %q", s)
				}
			}
		}},
		{name: "ready listener", opts: Options{NodeID: "n1", Fleet: "edge", XDS: "xds:18000", ReadyPort: 19003}, check: func(t *testing.T, y string) {
			for _, s := range []string{"name: scopegate_ready", "port_value: 19003", "envoy.filters.http.health_check", "exact: /ready", "pass_through_mode: false", "--ready-port 19003"} {
				if !strings.Contains(y, s) {
					t.Errorf("missing %q", s)
				}
			}
		}},
		{name: "TLS by IP, server name given", opts: Options{NodeID: "n1", Fleet: "edge", XDS: "10.0.0.1:18000", XDSCA: "ca.crt", XDSServerName: "xds.internal"}, check: func(t *testing.T, y string) {
			for _, s := range []string{"exact: xds.internal", "sni: xds.internal", "--xds-server-name xds.internal"} {
				if !strings.Contains(y, s) {
					t.Errorf("missing %q", s)
				}
			}
			if strings.Contains(y, "tls_certificates") {
				t.Error("client certificate without --xds-cert")
			}
		}},
		{name: "TLS by IP, no server name", opts: Options{NodeID: "n1", Fleet: "edge", XDS: "10.0.0.1:18000", XDSCA: "ca.crt"}, check: func(t *testing.T, y string) {
			for _, s := range []string{"san_type: IP_ADDRESS", "exact: 10.0.0.1"} {
				if !strings.Contains(y, s) {
					t.Errorf("missing %q", s)
				}
			}
			if strings.Contains(y, "sni:") {
				t.Error("SNI set to an IP address")
			}
		}},
		{name: "plaintext has no transport socket", opts: Options{NodeID: "n1", Fleet: "edge", XDS: "xds:18000"}, check: func(t *testing.T, y string) {
			if strings.Contains(y, "transport_socket") {
				t.Error("transport socket without --xds-ca")
			}
		}},
		{name: "cert without CA", opts: Options{NodeID: "n", Fleet: "f", XDS: "xds:1", XDSCert: "c", XDSKey: "k"}, wantErr: "need --xds-ca"},
		{name: "cert without key", opts: Options{NodeID: "n", Fleet: "f", XDS: "xds:1", XDSCA: "ca", XDSCert: "c"}, wantErr: "--xds-cert and --xds-key go together"},
		{name: "no ready listener by default", opts: Options{NodeID: "n1", Fleet: "edge", XDS: "xds:18000"}, check: func(t *testing.T, y string) {
			if strings.Contains(y, "scopegate_ready") || strings.Contains(y, "listeners:") {
				t.Error("a ready listener without --ready-port")
			}
		}},
		{name: "ready port is admin port", opts: Options{NodeID: "n", Fleet: "f", XDS: "xds:1", ReadyPort: 9901}, wantErr: "ready port 9901 is the admin port"},
		{name: "no node id", opts: Options{Fleet: "edge", XDS: "xds:1"}, wantErr: "node id is required"},
		{name: "no fleet", opts: Options{NodeID: "n", XDS: "xds:1"}, wantErr: "fleet is required"},
		{name: "xds without port", opts: Options{NodeID: "n", Fleet: "f", XDS: "xds"}, wantErr: `xds "xds" is not host:port`},
		{name: "xds port zero", opts: Options{NodeID: "n", Fleet: "f", XDS: "xds:0"}, wantErr: "invalid port"},
		{name: "admin port", opts: Options{NodeID: "n", Fleet: "f", XDS: "xds:1", AdminPort: 70000}, wantErr: "admin port 70000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y, err := Render(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Parse(y); err != nil {
				t.Fatalf("rendered bootstrap does not parse back: %v", err)
			}
			tt.check(t, string(y))
		})
	}
}

func TestParseRejects(t *testing.T) {
	good, err := Render(Options{NodeID: "n", Fleet: "f", XDS: "xds:1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, old, new, wantErr string }{
		{"unknown field", "set_node_on_first_message_only: true", "set_node_on_first_message_only: true\n    no_such_field: 1", "no_such_field"},
		{"invalid value", "connect_timeout: 1s", "connect_timeout: 0s", "ConnectTimeout"},
		{"unlinked typed config", "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions", "type.googleapis.com/not.a.Type", "not.a.Type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Replace(string(good), tt.old, tt.new, 1)
			if in == string(good) {
				t.Fatal("edit did not apply")
			}
			if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
