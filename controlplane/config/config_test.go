package config

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/internal/contract"
)

const good = `
authz:
  address: "127.0.0.1:9191"
fleets:
  - name: edge
    listeners:
      - name: public
        address: "0.0.0.0"
        port: 10000
        virtual_hosts:
          - name: api
            domains: ["*"]
            routes:
              - name: orders-read
                match: {prefix: /orders, methods: [GET]}
                upstream: orders
                scopes: [orders:read]
              - name: health
                match: {path: /healthz}
                upstream: orders
                public: true
upstreams:
  - name: orders
    endpoints: ["127.0.0.1:8081"]
`

func TestParseDefaults(t *testing.T) {
	cfg, err := Parse("good.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != DefaultListen || cfg.Admin != DefaultAdmin {
		t.Errorf("listen/admin = %q/%q, want defaults", cfg.Listen, cfg.Admin)
	}
	a := cfg.Authz
	if a.Timeout != DefaultAuthzTimeout || a.StatusOnError != 503 || !a.IncludePeerCertificate || a.FailureModeAllow {
		t.Errorf("authz defaults wrong: %+v", a)
	}
	if u := cfg.Upstreams[0]; u.Timeout != DefaultUpstreamTimout || u.ConnectTimeout != DefaultConnectTimeout {
		t.Errorf("upstream defaults wrong: %+v", u)
	}
	routes := cfg.Fleets[0].Listeners[0].VirtualHosts[0].Routes
	if routes[0].Mode != contract.ModeEnforce || routes[1].Mode != "" {
		t.Errorf("modes = %q, %q; want enforce for protected, empty for public", routes[0].Mode, routes[1].Mode)
	}
}

func TestParseDurations(t *testing.T) {
	cfg, err := Parse("d.yaml", []byte(strings.Replace(good, `address: "127.0.0.1:9191"`, "address: \"127.0.0.1:9191\"\n  timeout: 1500ms", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Authz.Timeout != 1500*time.Millisecond {
		t.Errorf("timeout = %s", cfg.Authz.Timeout)
	}
}

func TestLoadResolvesRelativeTLSPaths(t *testing.T) {
	dir := t.TempDir()
	body := strings.Replace(good, `port: 10000`, "port: 10000\n        tls: {cert_file: certs/tls.crt, key_file: /abs/tls.key}", 1)
	path := filepath.Join(dir, "xds.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	tls := cfg.Fleets[0].Listeners[0].TLS
	if tls.CertFile != filepath.Join(dir, "certs/tls.crt") || tls.KeyFile != "/abs/tls.key" {
		t.Errorf("tls paths = %q, %q", tls.CertFile, tls.KeyFile)
	}
	if got := cfg.TLSFiles(); len(got) != 2 {
		t.Errorf("TLSFiles = %v", got)
	}
}

// TestParseErrors: each bad input fails with an error naming the place and the problem.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(string) string
		raw     string
		wantErr string
	}{
		{name: "empty file", raw: "", wantErr: "bad.yaml: empty config"},
		{name: "unknown top-level field", edit: add("listne: \":1\""), wantErr: "field listne not found"},
		{name: "unknown route field", edit: repl("scopes: [orders:read]", "scope: [orders:read]"), wantErr: "field scope not found"},
		{name: "bad duration", edit: repl(`address: "127.0.0.1:9191"`, "address: \"127.0.0.1:9191\"\n  timeout: soon"), wantErr: "cannot unmarshal"},
		{name: "two documents", edit: add("---\nlisten: \":1\""), wantErr: "more than one YAML document"},
		{name: "no authz address", edit: repl(`address: "127.0.0.1:9191"`, `timeout: 1s`), wantErr: "authz: address: required"},
		{name: "authz zero timeout", edit: repl(`address: "127.0.0.1:9191"`, "address: \"127.0.0.1:9191\"\n  timeout: 0s"), wantErr: "authz: timeout: must be positive"},
		{name: "status_on_error not an error", edit: repl(`address: "127.0.0.1:9191"`, "address: \"127.0.0.1:9191\"\n  status_on_error: 200"), wantErr: "authz: status_on_error: 200 is not an HTTP error status"},
		{name: "bad listen", edit: add(`listen: "18000"`), wantErr: `listen: "18000" is not host:port`},
		{name: "no fleets", edit: repl("fleets:\n  - name: edge\n", "nofleets:\n  - name: edge\n"), wantErr: "field nofleets not found"},
		{name: "duplicate fleet", edit: dupFleet, wantErr: `fleet "edge": duplicate fleet name`},
		{name: "bad fleet name", edit: repl("name: edge", "name: edge fleet"), wantErr: `fleet "edge fleet": name "edge fleet": use letters`},
		{name: "listener address not IP", edit: repl(`address: "0.0.0.0"`, `address: "localhost"`), wantErr: `fleet "edge": listener "public": address: "localhost" is not an IP address`},
		{name: "listener port out of range", edit: repl("port: 10000", "port: 70000"), wantErr: `fleet "edge": listener "public": port: 70000 is out of range`},
		{name: "port clash", edit: secondListener("public2", "127.0.0.1", 10000), wantErr: `fleet "edge": listener "public2": port 10000 clashes with listener "public"`},
		{name: "duplicate listener", edit: secondListener("public", "0.0.0.0", 10001), wantErr: `fleet "edge": listener "public": duplicate listener name`},
		{name: "tls key without cert", edit: repl("port: 10000", "port: 10000\n        tls: {key_file: k.pem}"), wantErr: `fleet "edge": listener "public": tls: cert_file is required with key_file`},
		{name: "no domains", edit: repl(`domains: ["*"]`, `domains: []`), wantErr: `fleet "edge": listener "public": virtual host "api": domains: at least one domain is required`},
		{name: "bad wildcard", edit: repl(`domains: ["*"]`, `domains: ["a.*.com"]`), wantErr: `virtual host "api": domains[0]: "a.*.com" is not a host name`},
		{name: "unknown upstream", edit: repl("upstream: orders\n                scopes", "upstream: payments\n                scopes"), wantErr: `fleet "edge": listener "public": virtual host "api": route "orders-read": upstream "payments" is not defined in upstreams`},
		{name: "duplicate route", edit: repl("name: health", "name: orders-read"), wantErr: `route "orders-read": duplicate route name`},
		{name: "prefix and path", edit: repl("match: {prefix: /orders,", "match: {prefix: /orders, path: /x,"), wantErr: `route "orders-read": match: prefix and path are mutually exclusive`},
		{name: "no match", edit: repl("match: {path: /healthz}", "match: {}"), wantErr: `route "health": match: one of prefix or path is required`},
		{name: "relative path", edit: repl("match: {path: /healthz}", "match: {path: healthz}"), wantErr: `route "health": match: path: "healthz" must start with /`},
		{name: "query in prefix", edit: repl("prefix: /orders", `prefix: "/orders?x=1"`), wantErr: `route "orders-read": match: prefix: "/orders?x=1" must not contain`},
		{name: "lower-case method", edit: repl("methods: [GET]", "methods: [get]"), wantErr: `route "orders-read": match: methods[0]: "get" is not an HTTP method`},
		{name: "duplicate method", edit: repl("methods: [GET]", "methods: [GET, GET]"), wantErr: `route "orders-read": match: methods[1]: duplicate method "GET"`},
		{name: "public with scopes", edit: repl("public: true", "public: true\n                scopes: [x]"), wantErr: `route "health": public route cannot require scopes`},
		{name: "public with mode", edit: repl("public: true", "public: true\n                mode: shadow"), wantErr: `route "health": mode "shadow" applies to protected routes only`},
		{name: "public with binding", edit: repl("public: true", "public: true\n                binding: required"), wantErr: `route "health": binding "required" applies to protected routes only`},
		{name: "unknown binding", edit: repl("scopes: [orders:read]", "scopes: [orders:read]\n                binding: dpop"), wantErr: `route "orders-read": binding: "dpop" is not "required"`},
		{name: "unknown mode", edit: repl("scopes: [orders:read]", "scopes: [orders:read]\n                mode: audit"), wantErr: `route "orders-read": mode: "audit" is not one of`},
		{name: "scope with space", edit: repl("scopes: [orders:read]", `scopes: ["orders read"]`), wantErr: `route "orders-read": scopes[0]: scope "orders read" has a character not allowed`},
		{name: "scope with quote", edit: repl("scopes: [orders:read]", `scopes: ['a"b']`), wantErr: `scopes[0]: scope "a\"b" has a character not allowed`},
		{name: "no endpoints", edit: repl(`endpoints: ["127.0.0.1:8081"]`, `endpoints: []`), wantErr: `upstreams[0] "orders": endpoints: at least one host:port is required`},
		{name: "endpoint without port", edit: repl(`endpoints: ["127.0.0.1:8081"]`, `endpoints: ["127.0.0.1"]`), wantErr: `upstreams[0] "orders": endpoints[0]: "127.0.0.1" is not host:port`},
		{name: "endpoint bad host", edit: repl(`endpoints: ["127.0.0.1:8081"]`, `endpoints: ["bad_host!:80"]`), wantErr: `endpoints[0]: "bad_host!:80": host "bad_host!" is neither an IP address nor a DNS name`},
		{name: "reserved upstream name", edit: repl("  - name: orders\n    endpoints", "  - name: scopegate_authz\n    endpoints"), wantErr: `upstreams[0] "scopegate_authz": name "scopegate_authz" is reserved`},
		{name: "negative route timeout", edit: repl("public: true", "public: true\n                timeout: -1s"), wantErr: `route "health": timeout: must not be negative`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.raw
			if tt.edit != nil {
				in = tt.edit(good)
				if in == good {
					t.Fatal("edit did not change the config")
				}
			}
			_, err := Parse("bad.yaml", []byte(in))
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "bad.yaml: ") {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}

// TestParseReportsAllErrors: one run lists every problem, not just the first.
func TestParseReportsAllErrors(t *testing.T) {
	in := repl("methods: [GET]", "methods: [get]")(repl("port: 10000", "port: 0")(good))
	_, err := Parse("bad.yaml", []byte(in))
	if err == nil || !strings.Contains(err.Error(), "methods[0]") || !strings.Contains(err.Error(), "port: 0 is out of range") {
		t.Fatalf("want both errors, got %v", err)
	}
}

func repl(old, new string) func(string) string {
	return func(s string) string { return strings.Replace(s, old, new, 1) }
}

func add(line string) func(string) string {
	return func(s string) string { return s + line + "\n" }
}

func dupFleet(s string) string {
	i := strings.Index(s, "  - name: edge")
	j := strings.Index(s, "upstreams:")
	return s[:j] + s[i:j] + s[j:]
}

func secondListener(name, addr string, port int) func(string) string {
	return func(s string) string {
		l := "      - name: " + name + "\n        address: \"" + addr + "\"\n        port: " + itoa(port) + "\n" +
			"        virtual_hosts:\n          - name: api\n            domains: [\"*\"]\n            routes:\n" +
			"              - name: r\n                match: {prefix: /}\n                upstream: orders\n"
		i := strings.Index(s, "upstreams:")
		return s[:i] + l + s[i:]
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
