package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/compile"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// The server verifies a signed policy bundle with policy.signing, and refuses it without.
func TestSignedBundlePolicy(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	pubFile := filepath.Join(dir, "bundle.pub.pem")
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "authz.rego"), []byte("package scopegate.authz\n\ndecision := {\"allow\": true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	private := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
	if err := compile.New().WithPaths(src).WithAsBundle(true).WithOutput(&out).
		WithBundleSigningConfig(bundle.NewSigningConfig(private, "RS256", "")).Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(dir, "bundle.tar.gz")
	if err := os.WriteFile(tarball, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	is := testissuer.New(testissuer.NewKey("k1", "ES256"))
	defer is.Close()
	for _, tt := range []struct {
		name, signing, wantErr string
	}{
		{"verified", fmt.Sprintf("signing: {public_key_file: %q}", pubFile), ""},
		{"no policy.signing", "", "policy.signing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: "127.0.0.1:0"
issuers: [{name: demo, issuer: %q, jwks_uri: %q, audiences: [orders-api]}]
policy: {path: %q, %s}
decision_log: {output: "off"}
`, is.Issuer, is.JWKSURL(), tarball, tt.signing)))
			if err != nil {
				t.Fatal(err)
			}
			srv, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New = %v, want an error naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			defer srv.Shutdown(ctx)
			if src := srv.engine.Revision().Source; src != tarball {
				t.Fatalf("revision source %s, want the bundle", src)
			}
		})
	}
}
