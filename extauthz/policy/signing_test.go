package policy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/compile"
)

// signingKey is a key pair as opa build and our config take them: PEM private and public.
type signingKey struct{ private, public string }

func newRSAKey(t *testing.T) signingKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{
		private: string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})),
		public:  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
	}
}

// buildBundle is `opa build -b dir [--signing-key ... --scope ...]` with OPA's compile package.
func buildBundle(t *testing.T, key *signingKey, scope string) string {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "authz.rego"), []byte("package scopegate.authz\n\ndecision := {\"allow\": true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	c := compile.New().WithPaths(src).WithAsBundle(true).WithOutput(&out)
	if key != nil {
		sc := bundle.NewSigningConfig(key.private, "RS256", "")
		if scope != "" {
			claims := filepath.Join(t.TempDir(), "claims.json")
			if err := os.WriteFile(claims, []byte(`{"scope":"`+scope+`"}`), 0o600); err != nil {
				t.Fatal(err)
			}
			sc = bundle.NewSigningConfig(key.private, "RS256", claims)
		}
		c = c.WithBundleSigningConfig(sc).WithBundleVerificationKeyID("default")
	}
	if err := c.Build(context.Background()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tamper rewrites a bundle tarball with one file's content changed, signatures untouched.
func tamper(t *testing.T, path, name string, content []byte) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tr, tw := tar.NewReader(zr), tar.NewWriter(zw)
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(h.Name, name) {
			body, found = content, true
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if !found {
		t.Fatalf("%s not in the bundle", name)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(t.TempDir(), "tampered.tar.gz")
	if err := os.WriteFile(tampered, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return tampered
}

func TestSignedBundles(t *testing.T) {
	key, other := newRSAKey(t), newRSAKey(t)
	signed := buildBundle(t, &key, "")
	tampered := tamper(t, signed, "authz.rego", []byte("package scopegate.authz\n\ndecision := {\"allow\": false}\n"))
	scoped := buildBundle(t, &key, "prod")
	unsigned := buildBundle(t, nil, "")
	tests := []struct {
		name    string
		bundle  string
		signing *Signing
		wantErr string // "" loads
	}{
		{"signed, verified", signed, &Signing{PublicKey: []byte(key.public), KeyID: "default"}, ""},
		{"signed, any key id: the config names the key", signed, &Signing{PublicKey: []byte(key.public), KeyID: "release-2026"}, ""},
		{"signed with a scope, verified with it", scoped, &Signing{PublicKey: []byte(key.public), KeyID: "default", Scope: "prod"}, ""},
		{"unsigned, no signing configured", unsigned, nil, ""},
		{"signed, no signing configured", signed, nil, "policy.signing"},
		{"signed by another key", signed, &Signing{PublicKey: []byte(other.public), KeyID: "default"}, "verify"},
		{"unsigned, signing configured", unsigned, &Signing{PublicKey: []byte(key.public), KeyID: "default"}, ".signatures.json"},
		{"signed, then a policy file changed", tampered, &Signing{PublicKey: []byte(key.public), KeyID: "default"}, "authz.rego"},
		{"scope mismatch", scoped, &Signing{PublicKey: []byte(key.public), KeyID: "default", Scope: "staging"}, "scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vc, err := Verification(tt.signing)
			if err != nil {
				t.Fatal(err)
			}
			e, err := New(context.Background(), Options{Path: tt.bundle, Verification: vc})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if d, err := e.Eval(context.Background(), e.Revision(), nil); err != nil || !d.Allow {
					t.Fatalf("the bundle's decision: %+v %v", d, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New = %v, want an error containing %q", err, tt.wantErr)
			}
			t.Log(err)
		})
	}
}

func TestVerificationKeyErrors(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPub, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	ecPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecPub}))
	tests := []struct {
		name, pem, wantAlg, wantErr string
	}{
		{"RSA", newRSAKey(t).public, "RS256", ""},
		{"EC P-384", ecPEM, "ES384", ""},
		{"a private key", newRSAKey(t).private, "", "not a public key"},
		{"not PEM", "hello", "", "not a PEM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vc, err := Verification(&Signing{PublicKey: []byte(tt.pem), KeyID: "k", Field: "policy.signing.public_key_file", File: "key.pem"})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "policy.signing.public_key_file") {
					t.Fatalf("err = %v, want one naming policy.signing.public_key_file and %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := vc.PublicKeys["k"].Algorithm; got != tt.wantAlg {
				t.Fatalf("algorithm %s, want %s", got, tt.wantAlg)
			}
		})
	}
}
