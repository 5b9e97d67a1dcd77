package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const minimal = `
issuers:
  - name: demo
    issuer: "http://localhost:9400"
    jwks_uri: "http://localhost:9400/keys"
    audiences: [orders-api]
`

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	is := c.Issuers[0]
	if c.Listen != ":9191" || c.Admin != ":9092" || *c.TokenCache.MaxEntries != 100000 || c.Bearer.MaxTokenBytes != 8192 ||
		c.Policy.Query != "data.scopegate.authz.decision" || !*c.Policy.RunTests || c.Policy.ErrorStatus != 500 ||
		is.Leeway != 30*time.Second || is.RefreshInterval != 15*time.Minute || strings.Join(is.Algorithms, ",") != "RS256,ES256,EdDSA,PS256" ||
		strings.Join(is.ScopeClaims, ",") != "scope,scp" || c.Headers.Subject != "x-scopegate-subject" || *c.DecisionLog.SampleRate != 1 ||
		!*c.DecisionLog.IncludeInput || c.Policy.Bundle != nil || c.Tracing.OTLPEndpoint != "" || *c.DrainDelay != 5*time.Second || *c.DecisionLog.InputSampleRate != 0.1 {
		t.Fatalf("defaults: %+v %+v", c, is)
	}
}

// An explicit drain_delay of 0s stops at once; it is not taken for "unset".
func TestDrainDelayZero(t *testing.T) {
	c, err := Parse([]byte(minimal + "drain_delay: 0s\n"))
	if err != nil || *c.DrainDelay != 0 {
		t.Fatalf("drain_delay: %v %v, want 0", c.DrainDelay, err)
	}
}

// An explicit 0 turns the token cache off, as documented; it is not taken for "unset".
func TestTokenCacheOff(t *testing.T) {
	c, err := Parse([]byte(minimal + "token_cache: {max_entries: 0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if *c.TokenCache.MaxEntries != 0 {
		t.Fatalf("max_entries = %d, want 0 (off)", *c.TokenCache.MaxEntries)
	}
	c, err = Parse([]byte(minimal + "token_cache: {max_entries: 500}\n"))
	if err != nil || *c.TokenCache.MaxEntries != 500 {
		t.Fatalf("max_entries 500: %v %v", c.TokenCache.MaxEntries, err)
	}
}

// An explicit leeway of 0 is strict, not the default.
func TestZeroLeeway(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(minimal, "audiences", "leeway: 0s\n    audiences", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuers[0].Leeway != 0 {
		t.Fatalf("leeway = %s, want 0", c.Issuers[0].Leeway)
	}
}

func TestBadValuesNameTheField(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown field", minimal + "listn: ':1'\n", "listn: line 7: field listn not found"},
		{"no issuers", "listen: ':1'\n", "issuers: at least one issuer"},
		{"bad listen", minimal + "listen: '9191'\n", `listen: "9191" is not host:port`},
		{"relative socket", minimal + "listen: unix://run/authz.sock\n", "listen: \"unix://run/authz.sock\": a Unix socket needs an absolute path"},
		{"socket_group on TCP", minimal + "socket_group: envoy\n", "socket_group: applies to a Unix socket"},
		{"tls without key", minimal + "tls: {cert_file: a.crt}\n", "tls.key_file: required"},
		{"admin_tls without cert", minimal + "admin_tls: {key_file: a.key}\n", "admin_tls.cert_file: required"},
		{"tls misspelt field", minimal + "tls: {cert_file: a.crt, key_file: a.key, ca_file: c.crt}\n", "field ca_file not found"},
		{"client_uri_sans without client_ca_file", minimal + "tls: {cert_file: a.crt, key_file: a.key, client_uri_sans: [\"spiffe://x/authz-client\"]}\n", "tls.client_uri_sans: needs client_ca_file"},
		{"client_uri_sans not a URI", minimal + "tls: {cert_file: a.crt, key_file: a.key, client_ca_file: c.crt, client_uri_sans: [authz-client]}\n", "tls.client_uri_sans[0]: \"authz-client\" is not an absolute URI"},
		{"dpop_replay_entries_per_key above the cache", minimal + "dpop_replay_entries_per_key: 300000\n", "dpop_replay_entries_per_key: 300000 is out of range"},
		{"introspection max_concurrent negative", strings.Replace(minimal, "audiences:", "introspection: {endpoint: \"https://idp.example.com/i\", client_id: c, key_file: x, max_concurrent: -1}\n    audiences:", 1), "max_concurrent: -1 is out of range"},
		{"token_cache.max_negative_entries negative", minimal + "token_cache: {max_negative_entries: -1}\n", "token_cache.max_negative_entries: must not be negative"},
		{"HMAC algorithm", strings.Replace(minimal, "audiences", "algorithms: [HS256]\n    audiences", 1), `issuers[0] (demo).algorithms: "HS256" is not allowed`},
		{"alg none", strings.Replace(minimal, "audiences", "algorithms: [none]\n    audiences", 1), `"none" is not allowed`},
		{"no audience", strings.Replace(minimal, "    audiences: [orders-api]\n", "", 1), "issuers[0] (demo).audiences: at least one audience"},
		{"two key sources", strings.Replace(minimal, "audiences", "jwks_file: x.json\n    audiences", 1), "exactly one of discovery"},
		{"no key source", strings.Replace(minimal, `    jwks_uri: "http://localhost:9400/keys"`+"\n", "", 1), "exactly one of discovery"},
		{"jwks_uri not http", strings.Replace(minimal, "http://localhost:9400/keys", "file:///etc/keys", 1), "jwks_uri: want an http(s) URL"},
		{"duration", strings.Replace(minimal, "audiences", "leeway: ten\n    audiences", 1), "issuers[0].leeway: line 6: cannot unmarshal `ten`: want a duration such as 30s"},
		{"leeway too large", strings.Replace(minimal, "audiences", "leeway: 1h\n    audiences", 1), "leeway: 1h0m0s is out of range"},
		{"duplicate issuer", minimal + `  - name: demo
    issuer: "http://localhost:9400"
    jwks_uri: "http://localhost:9400/keys"
    audiences: [a]
`, `duplicate issuer name "demo"`},
		{"header case", minimal + "headers: {subject: X-Sub}\n", `headers.subject: "X-Sub" must be a lower-case header name`},
		{"token limit", minimal + "bearer: {max_token_bytes: 10}\n", "bearer.max_token_bytes: 10 is out of range"},
		{"query", minimal + "policy: {query: allow}\n", `policy.query: "allow" must be a data reference`},
		{"policy path", minimal + "policy: {path: /nonexistent/policies}\n", "policy.path:"},
		{"error status", minimal + "policy: {error_status: 200}\n", "policy.error_status: 200"},
		{"signing without a key", minimal + "policy: {path: /, signing: {key_id: k}}\n", "policy.signing.public_key_file: required"},
		{"signing key missing", minimal + "policy: {path: /, signing: {public_key_file: /nonexistent/bundle.pem}}\n", "policy.signing.public_key_file: stat /nonexistent/bundle.pem"},
		{"signing the built-in policy", minimal + "policy: {signing: {public_key_file: /}}\n", "policy.signing: needs policy.path"},
		{"signing unknown field", minimal + "policy: {path: /, signing: {public_key: x}}\n", "field public_key not found"},
		{"sample rate", minimal + "decision_log: {sample_rate: 2}\n", "decision_log.sample_rate: 2 is out of range"},
		{"input sample rate", minimal + "decision_log: {input_sample_rate: -0.5}\n", "decision_log.input_sample_rate: -0.5 is out of range"},
		{"hidden header", minimal + "decision_log: {hidden_headers: [x-api-key, 'bad header']}\n", `decision_log.hidden_headers[1]: "bad header" is not an HTTP header name`},
		{"drain delay", minimal + "drain_delay: -1s\n", "drain_delay: must not be negative"},
		{"tracing endpoint", minimal + "tracing: {otlp_endpoint: 'collector:4317'}\n", `tracing.otlp_endpoint: want http://host:port or https://host:port, got "collector:4317"`},
		{"tracing ratio", minimal + "tracing: {otlp_endpoint: 'http://collector:4317', sample_ratio: 1.5}\n", "tracing.sample_ratio: 1.5 is out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSigningDefaults(t *testing.T) {
	key := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(key, []byte("PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte(minimal + "policy: {path: /, signing: {public_key_file: " + key + ", scope: prod}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Policy.Signing; s == nil || s.KeyID != "default" || s.Scope != "prod" || s.PublicKeyFile != key || string(s.PublicKey) != "PEM" {
		t.Fatalf("signing = %+v, want key_id default, scope prod", s)
	}
	if c, err = Parse([]byte(minimal)); err != nil || c.Policy.Signing != nil {
		t.Fatalf("no signing block: %+v %v", c.Policy.Signing, err)
	}
}

// introspecting is an issuer for opaque tokens; secret is the client_secret_file path.
func introspecting(name, extra, secret string) string {
	return `  - name: ` + name + `
    issuer: "https://` + name + `.example.com/"
    discovery: true
    audiences: [orders-api]
    introspection:
      client_id: orders-api
      client_secret_file: ` + secret + `
` + extra
}

func TestIntrospectionConfig(t *testing.T) {
	secret := t.TempDir() + "/secret"
	keyFile := t.TempDir() + "/key.pem"
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ec)
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeSecret(secret, "s3cret\n"); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte("issuers:\n" + introspecting("corp", "", secret)))
	if err != nil {
		t.Fatal(err)
	}
	in := c.Issuers[0].Introspection
	if in.CacheTTL != 60*time.Second || in.NegativeCacheTTL != 5*time.Second || !c.Issuers[0].HasKeys() {
		t.Fatalf("defaults: %+v", in)
	}
	if in.ClientSecret != "s3cret" {
		t.Fatalf("client secret %q: want the file's content without its newline, read at load", in.ClientSecret)
	}
	// Introspection only: an endpoint and no key source.
	only := "issuers:\n  - name: corp\n    issuer: https://idp.example.com/\n    audiences: [a]\n    introspection: {endpoint: 'https://idp.example.com/introspect', client_id: c, client_secret_file: " + secret + "}\n"
	if c, err := Parse([]byte(only)); err != nil || c.Issuers[0].HasKeys() {
		t.Fatalf("introspection-only issuer: %v", err)
	}

	bad := []struct{ name, yaml, want string }{
		{"no endpoint without discovery", strings.Replace(only, "endpoint: 'https://idp.example.com/introspect', ", "", 1), "issuers[0] (corp).introspection.endpoint: required without discovery: true"},
		{"endpoint not http", strings.Replace(only, "https://idp.example.com/introspect", "ftp://idp/x", 1), `introspection.endpoint: want an http(s) URL without user info, got "ftp://idp/x"`},
		{"jwks_uri, no discovery, no endpoint", "issuers:\n" + strings.Replace(introspecting("corp", "", secret), "discovery: true", "jwks_uri: https://corp.example.com/keys", 1), "issuers[0] (corp).introspection.endpoint: required without discovery: true"},
		{"jwt_response without keys", strings.Replace(only, "client_id: c,", "client_id: c, jwt_response: true,", 1), "issuers[0] (corp).introspection.jwt_response: needs the issuer's keys"},
		{"secret and key", strings.Replace(only, "client_id: c,", "client_id: c, key_file: "+keyFile+",", 1), "issuers[0] (corp).introspection: client_secret_file and key_file are exclusive"},
		{"key file not a key", strings.Replace(only, "client_secret_file: "+secret, "key_file: "+secret, 1), "introspection.key_file: " + secret + ": no PEM block"},
		{"no client_id", strings.Replace(only, "client_id: c, ", "", 1), "introspection.client_id: required"},
		{"no secret file", strings.Replace(only, ", client_secret_file: "+secret, "", 1), "introspection.client_secret_file: required"},
		{"missing secret file", strings.Replace(only, secret, secret+".missing", 1), "introspection.client_secret_file: stat " + secret + ".missing"},
		{"negative ttl", "issuers:\n" + introspecting("corp", "      negative_cache_ttl: -1s\n", secret), "introspection.negative_cache_ttl: -1s is out of range"},
		{"ttl too long", "issuers:\n" + introspecting("corp", "      cache_ttl: 2h\n", secret), "introspection.cache_ttl: 2h0m0s is out of range"},
		{"unknown member", "issuers:\n" + introspecting("corp", "      client_key: k.pem\n", secret), "field client_key not found"},
		{"unreachable issuer", "issuers:\n" + introspecting("corp", "", secret) + introspecting("other", "", secret),
			`issuers[1].introspection.token_prefix: issuer "corp" introspects every opaque token (no token_prefix), so this one would never be asked`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	// private_key_jwt: key_file instead of client_secret_file.
	withKey := strings.Replace(only, "client_secret_file: "+secret, "key_file: "+keyFile+", key_id: k1", 1)
	c, err = Parse([]byte(withKey))
	if err != nil {
		t.Fatalf("key_file: %v", err)
	}
	if in := c.Issuers[0].Introspection; in.ClientSecret != "" || in.ClientKey == nil {
		t.Fatalf("credentials with key_file: secret %t, key %v; want the key only, read at load", in.ClientSecret != "", in.ClientKey != nil)
	}
	// With a prefix on the first, both are reachable.
	two := "issuers:\n" + introspecting("corp", "      token_prefix: corp_\n", secret) + introspecting("other", "", secret)
	if _, err := Parse([]byte(two)); err != nil {
		t.Fatalf("prefixed then catch-all: %v", err)
	}
	if _, err := readSecret(t.TempDir() + "/none"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("readSecret of a missing file: %v", err)
	}
}

func writeSecret(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }
