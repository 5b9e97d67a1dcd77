package democert

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWriteSet: a CA and one certificate per service, each chaining to the CA, with the SANs,
// SPIFFE ID and key usage its hop needs; keys 0600; the CA's key is never written.
func TestWriteSet(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if _, err := WriteSet(dir, SetOptions{TrustDomain: "example.org", Fleet: "blue", Validity: time.Hour}); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	tests := []struct {
		stem   string
		dns    string // a DNS name the certificate must be valid for ("": client only)
		spiffe string
		usage  x509.ExtKeyUsage
	}{
		{"authz", "authz", "spiffe://example.org/authz", x509.ExtKeyUsageServerAuth},
		{"xds", "xds", "spiffe://example.org/xds", x509.ExtKeyUsageServerAuth},
		{"envoy", "", "spiffe://example.org/fleet/blue", x509.ExtKeyUsageClientAuth},
		// What xds pushes to every fleet for the authz hop: its own identity, no fleet's.
		{"authz-client", "", "spiffe://example.org/authz-client", x509.ExtKeyUsageClientAuth},
	}
	for _, tt := range tests {
		t.Run(tt.stem, func(t *testing.T) {
			pair, err := tls.LoadX509KeyPair(filepath.Join(dir, tt.stem+".crt"), filepath.Join(dir, tt.stem+".key"))
			if err != nil {
				t.Fatal(err)
			}
			leaf := pair.Leaf
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: tt.dns, KeyUsages: []x509.ExtKeyUsage{tt.usage}}); err != nil {
				t.Errorf("does not verify for %q, %v: %v", tt.dns, tt.usage, err)
			}
			if tt.dns != "" {
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1"}); err != nil {
					t.Errorf("server certificate not valid for 127.0.0.1: %v", err)
				}
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != tt.spiffe {
				t.Errorf("URI SANs %v, want exactly %s", leaf.URIs, tt.spiffe)
			}
			fi, err := os.Stat(filepath.Join(dir, tt.stem+".key"))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("key mode %v (%v), want 0600", fi.Mode(), err)
			}
		})
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 9 { // ca.crt and four pairs: no CA key, no temporary files left
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files written: %v, want ca.crt and authz, xds, envoy, authz-client .crt/.key", names)
	}
}

func TestIssueRefuses(t *testing.T) {
	ca, err := NewCA("t", time.Hour, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.Issue(Leaf{Name: "x"}); err == nil {
		t.Error("a certificate for neither server nor client was issued")
	}
	if _, _, err := ca.Issue(Leaf{Name: "x", Client: true, URIs: []string{"no scheme"}}); err == nil {
		t.Error("a URI SAN without a scheme was accepted")
	}
	if _, err := NewCA("t", 0, time.Time{}); err == nil {
		t.Error("a CA with no validity was made")
	}
}
