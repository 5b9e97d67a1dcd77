package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/extauthz/config"
)

// The keys and secrets an authz config names are read once, when the config is loaded: the
// server builds from what the config holds and never opens those files again.
func TestHandlerUsesWhatTheConfigRead(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"secrets/introspection": "s3cret\n",
		"secrets/nonce.key":     strings.Repeat("n", 40) + "\n",
		"authz.yaml": `
issuers:
  - name: corp
    issuer: https://corp.example/
    jwks_uri: https://corp.example/keys
    audiences: [orders-api]
    introspection: {endpoint: "https://corp.example/introspect", client_id: orders-api, client_secret_file: DIR/secrets/introspection}
dpop_nonce: true
dpop_nonce_key_file: DIR/secrets/nonce.key
decision_log: {output: "off"}
`,
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(content, "DIR", dir)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "authz.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "secrets")); err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(t.Context(), cfg, HandlerOptions{})
	if err != nil {
		t.Fatalf("NewHandler after the secrets' files are gone: %v (they were read at load)", err)
	}
	if len(h.Introspectors) != 1 {
		t.Fatalf("%d introspection clients, want 1", len(h.Introspectors))
	}
}
