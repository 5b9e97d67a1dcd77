package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pathsConfig names a file or directory in every field that takes one, each relative.
const pathsConfig = `
tls: {cert_file: tls/authz.crt, key_file: tls/authz.key, client_ca_file: tls/ca.crt}
admin_tls: {cert_file: tls/admin.crt, key_file: tls/admin.key}
issuers:
  - name: file
    issuer: https://file.example
    jwks_file: keys/jwks.json
    audiences: [a]
  - name: corp
    issuer: https://corp.example/
    audiences: [a]
    introspection: {endpoint: "https://corp.example/introspect", client_id: c, client_secret_file: secrets/introspection}
dpop_nonce: true
dpop_nonce_key_file: secrets/nonce.key
decision_log: {output: logs/decisions.log}
routes_file: xds.yaml
shared_state:
  key_file: secrets/state.key
  redis: {addresses: ["127.0.0.1:6379"], username: u, password_file: secrets/redis, tls: {ca_file: tls/ca.crt, cert_file: tls/redis.crt, key_file: tls/redis.key}}
`

const pathsPolicy = "policy: {path: policies, signing: {public_key_file: keys/bundle.pem}}\n"

const pathsBundle = `policy:
  bundle:
    url: https://bundles.example/authz.tar.gz
    persist_dir: persist
    signing: {public_key_file: keys/bundle.pem}
    credentials: {bearer_token_file: secrets/bundle-token, ca_file: tls/ca.crt}
`

// writeConfigDir writes yaml as dir/conf/authz.yaml, with every file it names beside it.
func writeConfigDir(t *testing.T, yaml string) (path string) {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "conf")
	key := strings.Repeat("k", 40)
	files := map[string]string{
		"tls/authz.crt": "c", "tls/authz.key": "k", "tls/ca.crt": "ca-pem", "tls/admin.crt": "c", "tls/admin.key": "k",
		"tls/redis.crt": "c", "tls/redis.key": "k", "keys/jwks.json": `{"keys":[]}`, "keys/bundle.pem": "bundle-pem",
		"secrets/introspection": "s3cret\n", "secrets/nonce.key": key + "\n", "secrets/state.key": key + "2\n",
		"secrets/redis": "pw", "secrets/bundle-token": "t", "xds.yaml": "fleets: []\n", "authz.yaml": yaml,
	}
	for name, content := range files {
		p := filepath.Join(conf, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"policies", "persist", "logs"} {
		if err := os.Mkdir(filepath.Join(conf, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(conf, "authz.yaml")
}

// Relative paths in the authz config name files beside it, whatever the working directory
// (as the xds config's always have); the keys and secrets are read at load.
func TestLoadResolvesPathsAgainstTheFile(t *testing.T) {
	path := writeConfigDir(t, pathsConfig+pathsPolicy)
	t.Chdir(t.TempDir()) // anywhere but the config's folder
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load from another directory: %v", err)
	}
	dir := filepath.Dir(path)
	in := func(name string) string { return filepath.Join(dir, name) }
	s := c.SharedState
	for _, tc := range []struct{ field, got, want string }{
		{"tls.cert_file", c.TLS.CertFile, in("tls/authz.crt")},
		{"tls.key_file", c.TLS.KeyFile, in("tls/authz.key")},
		{"tls.client_ca_file", c.TLS.ClientCAFile, in("tls/ca.crt")},
		{"admin_tls.cert_file", c.AdminTLS.CertFile, in("tls/admin.crt")},
		{"admin_tls.key_file", c.AdminTLS.KeyFile, in("tls/admin.key")},
		{"issuers[0].jwks_file", c.Issuers[0].JWKSFile, in("keys/jwks.json")},
		{"issuers[1].introspection.client_secret_file", c.Issuers[1].Introspection.ClientSecretFile, in("secrets/introspection")},
		{"dpop_nonce_key_file", c.DPoPNonceKeyFile, in("secrets/nonce.key")},
		{"decision_log.output", c.DecisionLog.Output, in("logs/decisions.log")},
		{"routes_file", c.RoutesFile, in("xds.yaml")},
		{"policy.path", c.Policy.Path, in("policies")},
		{"policy.signing.public_key_file", c.Policy.Signing.PublicKeyFile, in("keys/bundle.pem")},
		{"shared_state.key_file", s.KeyFile, in("secrets/state.key")},
		{"shared_state.redis.password_file", s.Redis.PasswordFile, in("secrets/redis")},
		{"shared_state.redis.tls.ca_file", s.Redis.TLS.CAFile, in("tls/ca.crt")},
		{"shared_state.redis.tls.cert_file", s.Redis.TLS.CertFile, in("tls/redis.crt")},
		{"shared_state.redis.tls.key_file", s.Redis.TLS.KeyFile, in("tls/redis.key")},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.field, tc.got, tc.want)
		}
	}

	// The bundle's files too.
	path = writeConfigDir(t, pathsConfig+pathsBundle)
	c, err = Load(path)
	if err != nil {
		t.Fatalf("Load with a bundle: %v", err)
	}
	dir = filepath.Dir(path)
	b := c.Policy.Bundle
	for _, tc := range []struct{ field, got, want string }{
		{"policy.bundle.persist_dir", b.PersistDir, in("persist")},
		{"policy.bundle.signing.public_key_file", b.Signing.PublicKeyFile, in("keys/bundle.pem")},
		{"policy.bundle.credentials.bearer_token_file", b.Credentials.BearerTokenFile, in("secrets/bundle-token")},
		{"policy.bundle.credentials.ca_file", b.Credentials.CAFile, in("tls/ca.crt")},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.field, tc.got, tc.want)
		}
	}
}

// A config loaded by a relative path resolves against that relative folder; absolute paths
// and decision_log's stdout, stderr and off are kept as written.
func TestLoadRelativeConfigPath(t *testing.T) {
	path := writeConfigDir(t, pathsConfig+pathsPolicy)
	t.Chdir(filepath.Dir(filepath.Dir(path)))
	c, err := Load(filepath.Join("conf", "authz.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join("conf", "keys", "jwks.json"); c.Issuers[0].JWKSFile != want {
		t.Errorf("jwks_file = %q, want %q", c.Issuers[0].JWKSFile, want)
	}
	abs := filepath.Join(filepath.Dir(path), "keys", "jwks.json")
	for _, out := range []string{"stdout", "stderr", "off"} {
		yaml := strings.Replace(strings.Replace(pathsConfig+pathsPolicy, "output: logs/decisions.log", "output: "+out, 1),
			"jwks_file: keys/jwks.json", "jwks_file: "+abs, 1)
		c, err := Load(writeConfigDir(t, yaml))
		if err != nil {
			t.Fatal(err)
		}
		if c.DecisionLog.Output != out || c.Issuers[0].JWKSFile != abs {
			t.Errorf("decision_log.output %q, jwks_file %q: want %q and %q, kept", c.DecisionLog.Output, c.Issuers[0].JWKSFile, out, abs)
		}
	}
}

// The keys and secrets the config names are read once, at load, into the config; the runtime
// never reads the files again (extauthz/server hands their content to the runtime packages).
func TestLoadReadsKeysOnce(t *testing.T) {
	path := writeConfigDir(t, pathsConfig+pathsPolicy)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// Change every file after the load: what the config holds is what was read at load.
	dir := filepath.Dir(path)
	for _, name := range []string{"secrets/introspection", "secrets/nonce.key", "secrets/state.key", "tls/ca.crt", "keys/bundle.pem"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("changed after load"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := c.SharedState
	for _, tc := range []struct{ what, got, want string }{
		{"introspection client secret", c.Issuers[1].Introspection.ClientSecret, "s3cret"},
		{"dpop nonce key", string(c.DPoPNonceKey), strings.Repeat("k", 40)},
		{"shared state key", string(s.Key), strings.Repeat("k", 40) + "2"},
		{"redis CA", string(s.Redis.TLS.CA), "ca-pem"},
		{"policy signing key", string(c.Policy.Signing.PublicKey), "bundle-pem"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.what, tc.got, tc.want)
		}
	}
	c, err = Load(writeConfigDir(t, pathsConfig+pathsBundle))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(c.Policy.Bundle.Signing.PublicKey); got != "bundle-pem" {
		t.Errorf("policy.bundle signing key = %q, want bundle-pem", got)
	}
}
