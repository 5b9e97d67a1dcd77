package idp

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler)) // the OIDC library logs through the default logger
	os.Exit(m.Run())
}

func statMode(path string) (os.FileMode, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Mode().Perm(), nil
}

func TestParseDefaults(t *testing.T) {
	cfg, err := Parse([]byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin != DefaultAdminListen || cfg.Tokens.AccessTokenLifetime != DefaultAccessTokenLifetime ||
		cfg.Tokens.RefreshTokenLifetime != DefaultRefreshTokenLifetime || cfg.Keys.Storage != "memory" {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
}

func TestComposeConfigLoads(t *testing.T) {
	cfg, err := Load("../../compose/idp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Issuer != "http://localhost:9400" || cfg.Listen != ":9400" || cfg.Keys.Algorithm != "RS256" {
		t.Fatalf("compose/idp.yaml: %+v", cfg)
	}
}

func TestConfigErrors(t *testing.T) {
	base := `listen: ":9400"
issuer: "http://localhost:9400"
api: {audience: orders-api, scopes: [{name: "orders:read"}]}
`
	okClient := "clients: [{id: job, secret: s, scopes: [\"orders:read\"]}]\n"
	tests := []struct {
		name, doc, want string
	}{
		{"unknown top-level field", base + okClient + "listne: x\n", "field listne not found"},
		{"unknown nested field", base + "clients: [{id: job, secret: s, scope: [a]}]\n", "field scope not found"},
		{"missing issuer", `listen: ":1"` + "\napi: {audience: a, scopes: [{name: r}]}\n" + okClient, "issuer: required"},
		{"issuer with trailing slash", strings.Replace(base, `9400"`+"\napi", `9400/"`+"\napi", 1) + okClient, "issuer: \"http://localhost:9400/\" must not end with a slash"},
		{"bad listen", strings.Replace(base, `":9400"`, `"9400"`, 1) + okClient, "listen:"},
		{"missing audience", `listen: ":1"` + "\nissuer: \"http://x\"\napi: {scopes: [{name: r}]}\n" + okClient, "api.audience: required"},
		{"oidc scope as api scope", strings.Replace(base, `orders:read"}]`, `openid"}]`, 1) + "clients: [{id: job, secret: s}]\n", "api.scopes[0].name: \"openid\" is an OpenID Connect scope"},
		{"client scope not an api scope", base + "clients: [{id: job, secret: s, scopes: [admin]}]\n", "clients[0].scopes[0]: \"admin\" is not one of api.scopes"},
		{"public client with secret", base + "clients: [{id: cli, public: true, secret: s, redirect_uris: [\"http://127.0.0.1/cb\"]}]\n", "clients[0].secret: a public client has no secret"},
		{"confidential without secret", base + "clients: [{id: job}]\n", "clients[0].secret: required"},
		{"public client credentials", base + "clients: [{id: cli, public: true, grant_types: [authorization_code, client_credentials], redirect_uris: [\"http://127.0.0.1/cb\"]}]\n", "clients[0].grant_types[1]: a public client cannot use client_credentials"},
		{"unknown grant", base + "clients: [{id: job, secret: s, grant_types: [password]}]\n", "clients[0].grant_types[0]: \"password\""},
		{"code without redirect", base + "clients: [{id: web, secret: s, grant_types: [authorization_code]}]\n", "clients[0].redirect_uris: required"},
		{"public non-loopback http redirect", base + "clients: [{id: cli, public: true, redirect_uris: [\"http://example.com/cb\"]}]\n", "clients[0].redirect_uris[0]"},
		{"duplicate client", base + "clients: [{id: job, secret: s}, {id: job, secret: s}]\n", "clients[1].id: duplicate client id \"job\""},
		{"user scope unknown", base + okClient + "users: [{username: a, password: a, scopes: [admin]}]\n", "users[0].scopes[0]"},
		{"user without password", base + okClient + "users: [{username: a}]\n", "users[0].password: required"},
		{"bad algorithm", base + okClient + "keys: {algorithm: HS256}\n", "keys.algorithm: \"HS256\""},
		{"small rsa", base + okClient + "keys: {rsa_bits: 1024}\n", "keys.rsa_bits: 1024"},
		{"file storage without file", base + okClient + "keys: {storage: file}\n", "keys.file: required"},
		{"bad duration", base + okClient + "tokens: {access_token_lifetime: soon}\n", "soon"},
		{"two documents", base + okClient + "---\nlisten: x\n", "more than one YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Relative paths in the idp config name files beside it, whatever the working directory:
// the key file is written in the config's folder, not in the directory the idp started in.
func TestLoadResolvesPathsAgainstTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "idp.yaml")
	yaml := strings.Replace(testConfig, "  algorithm: ES256\n", "  algorithm: ES256\n  storage: file\n  file: state/keys.json\n", 1) +
		"tls: {cert_file: tls/idp.crt, key_file: tls/idp.key, client_ca_file: tls/ca.crt}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	t.Chdir(elsewhere)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ field, got, want string }{
		{"keys.file", cfg.Keys.File, filepath.Join(dir, "state/keys.json")},
		{"tls.cert_file", cfg.TLS.CertFile, filepath.Join(dir, "tls/idp.crt")},
		{"tls.key_file", cfg.TLS.KeyFile, filepath.Join(dir, "tls/idp.key")},
		{"tls.client_ca_file", cfg.TLS.ClientCAFile, filepath.Join(dir, "tls/ca.crt")},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.field, tc.got, tc.want)
		}
	}
	if _, err := newKeyRing(cfg.Keys, cfg.maxTokenLifetime(), time.Now); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "keys.json")); err != nil {
		t.Errorf("the key file is not beside the config: %v", err)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "state")); err == nil {
		t.Error("a state folder appeared in the working directory")
	}
}
