package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/compile"
)

// signedPolicies is `opa build -b policies --signing-key KEY` (key id "release", scope
// "prod"), and the public key's file.
func signedPolicies(t *testing.T) (bundlePath, pubPath string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pubPath = filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	claims := filepath.Join(dir, "claims.json")
	if err := os.WriteFile(claims, []byte(`{"scope":"prod"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	priv := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
	var out bytes.Buffer
	if err := compile.New().WithPaths("../../policies").WithAsBundle(true).WithOutput(&out).
		WithBundleSigningConfig(bundle.NewSigningConfig(priv, "RS256", claims)).WithBundleVerificationKeyID("release").
		Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	bundlePath = filepath.Join(dir, "bundle.tar.gz")
	if err := os.WriteFile(bundlePath, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return bundlePath, pubPath
}

// Every command that reads a policy previews a signed bundle, with the key as flags or from
// authz's config (policy.signing or policy.bundle.signing); without a key it says how to
// give one.
func TestSignedBundleOnEveryPolicyCommand(t *testing.T) {
	bundlePath, pub := signedPolicies(t)
	dir := t.TempDir()
	issuer := "issuers:\n  - {name: a, issuer: https://idp.example, jwks_uri: https://idp.example/keys, audiences: [api]}\n"
	withSigning := filepath.Join(dir, "authz-signing.yaml")
	if err := os.WriteFile(withSigning, []byte(issuer+"policy:\n  path: "+bundlePath+"\n  signing: {public_key_file: "+pub+", key_id: release, scope: prod}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withBundle := filepath.Join(dir, "authz-bundle.yaml")
	if err := os.WriteFile(withBundle, []byte(issuer+"policy:\n  bundle: {url: https://bundles.example/b.tar.gz, signing: {public_key_file: "+pub+", scope: prod}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "decisions.jsonl")
	if err := os.WriteFile(log, []byte(`{"decision_id":"d-2","allow":false,"status":401,"reason":"missing_token"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--verification-key", pub, "--signing-scope", "prod"}
	commands := map[string][]string{
		"policy test":   {"policy", "test", bundlePath},
		"policy impact": {"policy", "impact", "--policy", bundlePath, "--log", log},
		"lint":          {"lint", "--xds", "../../compose/xds.local.yaml", "--policy", bundlePath},
		"check":         {"check", "--policy", bundlePath, "--claims", "../../examples/claims.json", "--route", "orders-read", "--scope", "orders:read"},
	}
	for name, args := range commands {
		t.Run(name, func(t *testing.T) {
			_, stderr, code := runCode(t, args...)
			if code != 2 || !strings.Contains(stderr, "is a signed bundle") || !strings.Contains(stderr, "--verification-key") {
				t.Errorf("no key: exit %d, %q; want 2 and how to give the key", code, stderr)
			}
			if _, stderr, code := runCode(t, append(args, flags...)...); code != 0 {
				t.Errorf("with %v: exit %d, %s", flags, code, stderr)
			}
			if _, stderr, code := runCode(t, append(args, "--verification-key", pub)...); code != 2 || !strings.Contains(stderr, "scope") {
				t.Errorf("without the signature's scope: exit %d, %q; want refused", code, stderr)
			}
			if name == "check" {
				return // check --config builds authz itself, which verifies with that config's policy.signing
			}
			for _, cfg := range []string{withSigning, withBundle} {
				if _, stderr, code := runCode(t, append(args, "--config", cfg)...); code != 0 {
					t.Errorf("--config %s: exit %d, %s", filepath.Base(cfg), code, stderr)
				}
			}
		})
	}
}
