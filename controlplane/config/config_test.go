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

// A route's RFC 9470 requirements parse as given; the control plane sends them (see the
// translate golden metadata.yaml).
func TestParseStepUp(t *testing.T) {
	cfg, err := Parse("s.yaml", []byte(strings.Replace(good, "scopes: [orders:read]", "scopes: [orders:read]\n                acr_values: [urn:example:mfa, hwk]\n                max_age: 5m", 1)))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Fleets[0].Listeners[0].VirtualHosts[0].Routes[0]
	if strings.Join(r.ACRValues, " ") != "urn:example:mfa hwk" || r.MaxAge != 5*time.Minute {
		t.Errorf("acr_values %q, max_age %s", r.ACRValues, r.MaxAge)
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
	body := strings.Replace(good, `port: 10000`, "port: 10000\n        tls: {cert_file: certs/tls.crt, key_file: /abs/tls.key}", 1) +
		"tls: {cert_file: xds.crt, key_file: xds.key, client_ca_file: ca.crt, trust_domain: example.org}\n" +
		"authz: {address: \"authz:9191\", tls: {ca_file: ca.crt, cert_file: envoy.crt, key_file: /abs/envoy.key}}\n"
	body = strings.Replace(body, "authz:\n  address: \"127.0.0.1:9191\"\n", "", 1)
	body = strings.Replace(body, "  - name: edge\n", "  - name: edge\n    authz_tls: {cert_file: edge-client.crt, key_file: edge-client.key}\n", 1)
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
	if cfg.TLS.ClientCAFile != filepath.Join(dir, "ca.crt") || cfg.TLS.CertFile != filepath.Join(dir, "xds.crt") {
		t.Errorf("ADS tls paths = %+v", cfg.TLS)
	}
	if a := cfg.Authz.TLS; a.CAFile != filepath.Join(dir, "ca.crt") || a.CertFile != filepath.Join(dir, "envoy.crt") || a.KeyFile != "/abs/envoy.key" {
		t.Errorf("authz tls paths = %+v", a)
	}
	if f := cfg.Fleets[0].AuthzTLS; f.CertFile != filepath.Join(dir, "edge-client.crt") || f.KeyFile != filepath.Join(dir, "edge-client.key") {
		t.Errorf("fleet authz_tls paths = %+v", f)
	}
	// The files pushed to Envoy are followed; the ADS server's own reload by themselves.
	want := []string{filepath.Join(dir, "certs/tls.crt"), "/abs/tls.key", filepath.Join(dir, "ca.crt"), filepath.Join(dir, "envoy.crt"), "/abs/envoy.key",
		filepath.Join(dir, "edge-client.crt"), filepath.Join(dir, "edge-client.key")}
	if got := cfg.TLSFiles(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("TLSFiles = %v, want %v", got, want)
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
		{name: "listener key over plaintext ADS", edit: repl("port: 10000", "port: 10000\n        tls: {cert_file: c.pem, key_file: k.pem}"),
			wantErr: `insecure_plaintext_secrets: private keys would go to Envoy over plaintext ADS (fleet "edge": listener "public": tls)`},
		{name: "authz client key over plaintext ADS", edit: repl(`address: "127.0.0.1:9191"`, "address: \"127.0.0.1:9191\"\n  tls: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem}"),
			wantErr: `insecure_plaintext_secrets: private keys would go to Envoy over plaintext ADS (authz: tls: key_file)`},
		{name: "authz tls without CA", edit: repl(`address: "127.0.0.1:9191"`, "address: \"127.0.0.1:9191\"\n  tls: {server_name: authz}"), wantErr: "authz: tls: ca_file: required"},
		{name: "authz tls cert without key", edit: repl(`address: "127.0.0.1:9191"`, "address: \"127.0.0.1:9191\"\n  tls: {ca_file: ca.pem, cert_file: c.pem}"), wantErr: "authz: tls: cert_file and key_file go together"},
		{name: "authz tls bad server name", edit: repl(`address: "127.0.0.1:9191"`, "address: \"127.0.0.1:9191\"\n  tls: {ca_file: ca.pem, server_name: \"a b\"}"), wantErr: `authz: tls: server_name: "a b" is not a DNS name`},
		{name: "ADS tls without key", edit: add("tls: {cert_file: x.crt}"), wantErr: "tls.key_file: required"},
		{name: "fleet authz_tls without authz.tls", edit: repl("  - name: edge\n", "  - name: edge\n    authz_tls: {cert_file: c.pem, key_file: k.pem}\n"),
			wantErr: `fleet "edge": authz_tls: needs authz.tls`},
		{name: "fleet authz_tls without key", edit: func(s string) string {
			s = repl(`address: "127.0.0.1:9191"`, "address: \"127.0.0.1:9191\"\n  tls: {ca_file: ca.pem}")(s)
			return repl("  - name: edge\n", "  - name: edge\n    authz_tls: {cert_file: c.pem}\n")(s)
		}, wantErr: `fleet "edge": authz_tls: cert_file and key_file are both required`},
		{name: "authz socket relative", edit: repl(`address: "127.0.0.1:9191"`, `address: "unix://authz.sock"`), wantErr: `authz: address: "unix://authz.sock": a Unix socket needs an absolute path`},
		{name: "authz socket with tls, no server name", edit: repl(`address: "127.0.0.1:9191"`, "address: \"unix:///run/authz.sock\"\n  tls: {ca_file: ca.pem}"), wantErr: "authz: tls: server_name: required when address is a Unix socket"},
		{name: "ADS mTLS without trust domain", edit: add("tls: {cert_file: x.crt, key_file: x.key, client_ca_file: ca.crt}"), wantErr: "tls.trust_domain: required with client_ca_file"},
		{name: "trust domain without client CA", edit: add("tls: {cert_file: x.crt, key_file: x.key, trust_domain: example.org}"), wantErr: "tls.trust_domain: needs client_ca_file"},
		{name: "no domains", edit: repl(`domains: ["*"]`, `domains: []`), wantErr: `fleet "edge": listener "public": virtual host "api": domains: at least one domain is required`},
		{name: "bad wildcard", edit: repl(`domains: ["*"]`, `domains: ["a.*.com"]`), wantErr: `virtual host "api": domains[0]: "a.*.com" is not a host name`},
		{name: "unknown upstream", edit: repl("upstream: orders\n                scopes", "upstream: payments\n                scopes"), wantErr: `fleet "edge": listener "public": virtual host "api": route "orders-read": upstream "payments" is not defined in upstreams`},
		{name: "duplicate route", edit: repl("name: health", "name: orders-read"), wantErr: `route "orders-read": duplicate route name`},
		{name: "prefix and path", edit: repl("match: {prefix: /orders,", "match: {prefix: /orders, path: /x,"), wantErr: `route "orders-read": match: prefix, path and regex are mutually exclusive`},
		{name: "no match", edit: repl("match: {path: /healthz}", "match: {}"), wantErr: `route "health": match: one of prefix, path or regex is required`},
		{name: "relative path", edit: repl("match: {path: /healthz}", "match: {path: healthz}"), wantErr: `route "health": match: path: "healthz" must start with /`},
		{name: "query in prefix", edit: repl("prefix: /orders", `prefix: "/orders?x=1"`), wantErr: `route "orders-read": match: prefix: "/orders?x=1" must not contain`},
		{name: "lower-case method", edit: repl("methods: [GET]", "methods: [get]"), wantErr: `route "orders-read": match: methods[0]: "get" is not an HTTP method`},
		{name: "duplicate method", edit: repl("methods: [GET]", "methods: [GET, GET]"), wantErr: `route "orders-read": match: methods[1]: duplicate method "GET"`},
		{name: "public with scopes", edit: repl("public: true", "public: true\n                scopes: [x]"), wantErr: `route "health": public route cannot require scopes`},
		{name: "public with mode", edit: repl("public: true", "public: true\n                mode: shadow"), wantErr: `route "health": mode "shadow" applies to protected routes only`},
		{name: "client cert required without CA", edit: repl("port: 10000", "port: 10000\n        tls: {cert_file: c.pem, key_file: k.pem, require_client_certificate: true}"), wantErr: `listener "public": tls: require_client_certificate needs client_ca_file`},
		{name: "client CA without a certificate", edit: repl("port: 10000", "port: 10000\n        tls: {client_ca_file: ca.pem}"), wantErr: `listener "public": tls: client_ca_file needs cert_file and key_file`},
		{name: "public with binding", edit: repl("public: true", "public: true\n                binding: required"), wantErr: `route "health": binding "required" applies to protected routes only`},
		{name: "public with acr_values", edit: repl("public: true", "public: true\n                acr_values: [mfa]"), wantErr: `route "health": acr_values and max_age apply to protected routes only`},
		{name: "public with max_age", edit: repl("public: true", "public: true\n                max_age: 5m"), wantErr: `route "health": acr_values and max_age apply to protected routes only`},
		{name: "acr value with a space", edit: repl("scopes: [orders:read]", "scopes: [orders:read]\n                acr_values: [\"two words\"]"), wantErr: `route "orders-read": acr_values[0]: "two words" is not an acr value`},
		{name: "acr value with a quote", edit: repl("scopes: [orders:read]", "scopes: [orders:read]\n                acr_values: ['a\"b']"), wantErr: `route "orders-read": acr_values[0]: "a\"b" is not an acr value`},
		{name: "empty acr value", edit: repl("scopes: [orders:read]", "scopes: [orders:read]\n                acr_values: [mfa, \"\"]"), wantErr: `route "orders-read": acr_values[1]: "" is not an acr value`},
		{name: "duplicate acr value", edit: repl("scopes: [orders:read]", "scopes: [orders:read]\n                acr_values: [mfa, hwk, mfa]"), wantErr: `route "orders-read": acr_values[2]: duplicate value "mfa"`},
		{name: "max_age not whole seconds", edit: repl("scopes: [orders:read]", "scopes: [orders:read]\n                max_age: 1500ms"), wantErr: `route "orders-read": max_age: 1.5s is not a whole number of seconds`},
		{name: "max_age negative", edit: repl("scopes: [orders:read]", "scopes: [orders:read]\n                max_age: -5m"), wantErr: `route "orders-read": max_age: -5m0s must not be negative`},
		{name: "max_age too long", edit: repl("scopes: [orders:read]", "scopes: [orders:read]\n                max_age: 9000h"), wantErr: `route "orders-read": max_age: 9000h0m0s is more than a year`},
		{name: "max_age without unit", edit: repl("scopes: [orders:read]", "scopes: [orders:read]\n                max_age: 300"), wantErr: "max_age"},
		{name: "unknown binding", edit: repl("scopes: [orders:read]", "scopes: [orders:read]\n                binding: dpop"), wantErr: `route "orders-read": binding: "dpop" is not "required"`},
		{name: "unknown mode", edit: repl("scopes: [orders:read]", "scopes: [orders:read]\n                mode: audit"), wantErr: `route "orders-read": mode: "audit" is not one of`},
		{name: "scope with space", edit: repl("scopes: [orders:read]", `scopes: ["orders read"]`), wantErr: `route "orders-read": scopes[0]: scope "orders read" has a character not allowed`},
		{name: "scope with quote", edit: repl("scopes: [orders:read]", `scopes: ['a"b']`), wantErr: `scopes[0]: scope "a\"b" has a character not allowed`},
		{name: "no endpoints", edit: repl(`endpoints: ["127.0.0.1:8081"]`, `endpoints: []`), wantErr: `upstreams[0] "orders": endpoints: at least one host:port is required`},
		{name: "endpoint without port", edit: repl(`endpoints: ["127.0.0.1:8081"]`, `endpoints: ["127.0.0.1"]`), wantErr: `upstreams[0] "orders": endpoints[0]: "127.0.0.1" is not host:port`},
		{name: "endpoint bad host", edit: repl(`endpoints: ["127.0.0.1:8081"]`, `endpoints: ["bad_host!:80"]`), wantErr: `endpoints[0]: "bad_host!:80": host "bad_host!" is neither an IP address nor a DNS name`},
		{name: "reserved upstream name", edit: repl("  - name: orders\n    endpoints", "  - name: scopegate_authz\n    endpoints"), wantErr: `upstreams[0] "scopegate_authz": name "scopegate_authz" is reserved`},
		{name: "metadata without resource", edit: withMetadata(`{authorization_servers: ["https://idp.example.com/"]}`), wantErr: `virtual host "api": resource_metadata: resource: required`},
		{name: "metadata http resource", edit: withMetadata(`{resource: "http://api.example.com", authorization_servers: ["https://idp.example.com/"]}`), wantErr: `resource_metadata: resource: "http://api.example.com" must use https`},
		{name: "metadata resource with fragment", edit: withMetadata(`{resource: "https://api.example.com/#x", authorization_servers: ["https://idp.example.com/"]}`), wantErr: `resource_metadata: resource: "https://api.example.com/#x" must not have a query or fragment`},
		{name: "metadata without servers", edit: withMetadata(`{resource: "https://api.example.com"}`), wantErr: `resource_metadata: authorization_servers: at least one issuer URL is required`},
		{name: "metadata relative server", edit: withMetadata(`{resource: "https://api.example.com", authorization_servers: ["/idp"]}`), wantErr: `resource_metadata: authorization_servers[0]: "/idp" must be an absolute URL`},
		{name: "metadata alg none", edit: withMetadata(`{resource: "https://api.example.com", authorization_servers: ["https://idp.example.com/"], resource_signing_alg_values_supported: [none]}`), wantErr: `resource_signing_alg_values_supported[0]: "none" is not a signing algorithm`},
		{name: "metadata unknown member", edit: withMetadata(`{resource: "https://api.example.com", authorization_servers: ["https://idp.example.com/"], documentation: "https://x"}`), wantErr: "field documentation not found"},
		{name: "route shadowed by metadata (exact)", edit: shadowing(`{path: /.well-known/oauth-protected-resource}`, "https://api.example.com"), wantErr: `virtual host "api": route "wk" matches the resource metadata path /.well-known/oauth-protected-resource; the metadata route would shadow it`},
		{name: "route shadowed by metadata (prefix)", edit: shadowing(`{prefix: /.well-known/}`, "https://api.example.com"), wantErr: `route "wk" matches the resource metadata path`},
		{name: "route shadowed by metadata (segment prefix)", edit: shadowing(`{prefix: /.well-known}`, "https://api.example.com"), wantErr: `route "wk" matches the resource metadata path`},
		{name: "route shadowed by metadata (suffixed path)", edit: shadowing(`{prefix: /.well-known/oauth-protected-resource/orders}`, "https://api.example.com/orders"), wantErr: `matches the resource metadata path /.well-known/oauth-protected-resource/orders`},
		{name: "metadata route name taken", edit: func(s string) string {
			return withMetadata(`{resource: "https://api.example.com", authorization_servers: ["https://idp.example.com/"]}`)(repl("name: health", "name: api.resource-metadata")(s))
		}, wantErr: `virtual host "api": route name "api.resource-metadata" (in virtual host "api") is reserved for the resource metadata route`},
		{name: "regex and prefix", edit: repl("match: {prefix: /orders,", `match: {prefix: /orders, regex: "/o.*",`), wantErr: `route "orders-read": match: prefix, path and regex are mutually exclusive`},
		{name: "bad regex", edit: repl("match: {path: /healthz}", `match: {regex: "/health(z"}`), wantErr: `route "health": match: regex: "/health(z" is not an RE2 expression`},
		{name: "case_sensitive with regex", edit: repl("match: {path: /healthz}", `match: {regex: "/healthz", case_sensitive: false}`), wantErr: `route "health": match: case_sensitive does not apply to regex`},
		{name: "header without name", edit: repl("methods: [GET]", "methods: [GET], headers: [{exact: v1}]"), wantErr: `route "orders-read": match: headers[0]: name: required`},
		{name: "header pseudo", edit: repl("methods: [GET]", "methods: [GET], headers: [{name: \":path\", exact: /x}]"), wantErr: `match: headers[0]: name ":path": match the path with prefix`},
		{name: "header upper case", edit: repl("methods: [GET]", "methods: [GET], headers: [{name: X-Api, exact: v1}]"), wantErr: `match: headers[0]: name "X-Api" is not a lower-case header name`},
		{name: "header two matchers", edit: repl("methods: [GET]", "methods: [GET], headers: [{name: x-api, exact: v1, prefix: v}]"), wantErr: `match: headers[0]: exactly one of exact, prefix, suffix, contains, regex and present is required`},
		{name: "header no matcher", edit: repl("methods: [GET]", "methods: [GET], headers: [{name: x-api, invert: true}]"), wantErr: `match: headers[0]: exactly one of`},
		{name: "header bad regex", edit: repl("methods: [GET]", "methods: [GET], headers: [{name: x-api, regex: \"v[\"}]"), wantErr: `match: headers[0]: regex: "v[" is not an RE2 expression`},
		{name: "header ignore_case regex", edit: repl("methods: [GET]", "methods: [GET], headers: [{name: x-api, regex: v1, ignore_case: true}]"), wantErr: `match: headers[0]: ignore_case applies to exact, prefix, suffix and contains only`},
		{name: "route shadowed by metadata (regex)", edit: shadowing(`{regex: "/[.]well-known/.*"}`, "https://api.example.com"), wantErr: `route "wk" matches the resource metadata path`},
		{name: "route shadowed by metadata (case-insensitive)", edit: shadowing(`{path: /.WELL-KNOWN/oauth-protected-resource, case_sensitive: false}`, "https://api.example.com"), wantErr: `route "wk" matches the resource metadata path`},
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

// TestInsecurePlaintextSecrets: a listener key over ADS needs tls on the ADS server, or the
// explicit development switch.
func TestInsecurePlaintextSecrets(t *testing.T) {
	withKey := strings.Replace(good, "port: 10000", "port: 10000\n        tls: {cert_file: c.pem, key_file: k.pem}", 1)
	tests := []struct {
		name, body string
		ok         bool
	}{
		{"plaintext ADS", withKey, false},
		{"plaintext ADS, insecure_plaintext_secrets: true", withKey + "insecure_plaintext_secrets: true\n", true},
		{"plaintext ADS, insecure_plaintext_secrets: false", withKey + "insecure_plaintext_secrets: false\n", false},
		{"mutual TLS ADS", withKey + "tls: {cert_file: x.crt, key_file: x.key, client_ca_file: ca.crt, trust_domain: example.org}\n", true},
		// TLS that authenticates no client: anyone can name any fleet and get its keys.
		{"server-only TLS ADS", withKey + "tls: {cert_file: x.crt, key_file: x.key}\n", false},
		{"server-only TLS ADS, insecure_plaintext_secrets: true", withKey + "tls: {cert_file: x.crt, key_file: x.key}\ninsecure_plaintext_secrets: true\n", true},
		{"no keys pushed", good, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tt.body))
			if tt.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "insecure_plaintext_secrets") {
				t.Fatalf("error does not name insecure_plaintext_secrets: %v", err)
			}
		})
	}
}

// withMetadata gives the good config's virtual host a resource_metadata block.
func withMetadata(block string) func(string) string {
	return repl(`domains: ["*"]`, "domains: [\"*\"]\n            resource_metadata: "+block)
}

// shadowing adds a route with match m next to resource_metadata for resource.
func shadowing(m, resource string) func(string) string {
	return func(s string) string {
		s = withMetadata(`{resource: "` + resource + `", authorization_servers: ["https://idp.example.com/"]}`)(s)
		return repl("            routes:\n", "            routes:\n              - name: wk\n                match: "+m+"\n                upstream: orders\n                public: true\n")(s)
	}
}

func TestResourceMetadataDocumentURL(t *testing.T) {
	tests := []struct{ resource, path, url string }{
		{"https://api.example.com", "/.well-known/oauth-protected-resource", "https://api.example.com/.well-known/oauth-protected-resource"},
		{"https://api.example.com/", "/.well-known/oauth-protected-resource", "https://api.example.com/.well-known/oauth-protected-resource"},
		{"https://api.example.com:8443/orders", "/.well-known/oauth-protected-resource/orders", "https://api.example.com:8443/.well-known/oauth-protected-resource/orders"},
		{"https://api.example.com/v1/orders/", "/.well-known/oauth-protected-resource/v1/orders", "https://api.example.com/.well-known/oauth-protected-resource/v1/orders"},
		{"http://localhost:10000", "/.well-known/oauth-protected-resource", "http://localhost:10000/.well-known/oauth-protected-resource"},
	}
	for _, tt := range tests {
		m := &ResourceMetadata{Resource: tt.resource}
		if got := m.DocumentPath(); got != tt.path {
			t.Errorf("%s: DocumentPath = %q, want %q", tt.resource, got, tt.path)
		}
		if got := m.DocumentURL(); got != tt.url {
			t.Errorf("%s: DocumentURL = %q, want %q", tt.resource, got, tt.url)
		}
	}
}

// TestResourceMetadataCatchAll: a catch-all prefix "/" is "everything else"; the document's
// exact route is carved out of it, so it is no shadowing error. Defaults: max-age one hour.
func TestResourceMetadataCatchAll(t *testing.T) {
	in := withMetadata(`{resource: "http://127.0.0.1:10000", authorization_servers: ["https://idp.example.com/"]}`)(good)
	in = repl("match: {path: /healthz}", "match: {prefix: /}")(in)
	cfg, err := Parse("good.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Fleets[0].Listeners[0].VirtualHosts[0].ResourceMetadata.CacheMaxAge; got != DefaultMetadataMaxAge {
		t.Errorf("cache_max_age = %s, want the default %s", got, DefaultMetadataMaxAge)
	}
}

// A routes file for authz's mesh mode needs only fleets, listener names and virtual hosts:
// no authz address, listener addresses or upstreams; the rest of the schema stays strict.
func TestParseRoutes(t *testing.T) {
	const routesOnly = `
fleets:
  - name: mesh
    listeners:
      - name: gateway
        virtual_hosts:
          - name: api
            domains: ["api.example.com"]
            routes:
              - name: orders
                match: {prefix: /orders, headers: [{name: x-api-version, exact: "2"}]}
                scopes: [orders:read]
              - name: health
                match: {path: /healthz}
                public: true
`
	cfg, err := ParseRoutes("routes.yaml", []byte(routesOnly))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Fleets[0].Listeners[0].VirtualHosts[0].Routes[0]
	if r.Mode != contract.ModeEnforce || r.Match.Headers[0].Exact != "2" {
		t.Fatalf("route %+v: defaults or headers not read", r)
	}
	if _, err := Parse("routes.yaml", []byte(routesOnly)); err == nil {
		t.Fatal("the full schema accepted a file without authz address and upstreams")
	}
	for name, tc := range map[string]struct{ edit, want string }{
		"misspelt key":   {"scopes: [orders:read]", "scope: [orders:read]"},
		"bad route":      {"match: {path: /healthz}", "match: {}"},
		"no fleets":      {"fleets:", "fleet:"},
		"bad domain":     {`domains: ["api.example.com"]`, `domains: ["a.*.com"]`},
		"public, scoped": {"public: true", "public: true\n                scopes: [x]"},
	} {
		t.Run(name, func(t *testing.T) {
			in := strings.Replace(routesOnly, tc.edit, tc.want, 1)
			if _, err := ParseRoutes("routes.yaml", []byte(in)); err == nil || !strings.HasPrefix(err.Error(), "routes.yaml: ") {
				t.Fatalf("ParseRoutes = %v, want an error naming routes.yaml", err)
			}
		})
	}
}

// The route contract is built in one place for both halves: RouteExtensions.
func TestRouteExtensions(t *testing.T) {
	vh := &VirtualHost{Name: "api", ResourceMetadata: &ResourceMetadata{Resource: "https://api.example.com/v1"}}
	tests := []struct {
		r    Route
		want map[string]string
	}{
		{Route{Name: "a", Scopes: []string{"x", "y"}, Mode: contract.ModeEnforce},
			map[string]string{"route": "a", "scopes": "x y", "resource_metadata": "https://api.example.com/.well-known/oauth-protected-resource/v1"}},
		{Route{Name: "b", Mode: contract.ModeShadow, Binding: contract.BindingRequired},
			map[string]string{"route": "b", "scopes": "", "mode": "shadow", "binding": "required", "resource_metadata": "https://api.example.com/.well-known/oauth-protected-resource/v1"}},
		{Route{Name: "c", Public: true}, nil},
	}
	for _, tt := range tests {
		got := vh.RouteExtensions(&tt.r)
		if len(got) != len(tt.want) {
			t.Fatalf("%s: %v, want %v", tt.r.Name, got, tt.want)
		}
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q", tt.r.Name, k, got[k], v)
			}
		}
	}
}
