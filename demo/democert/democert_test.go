package democert

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	certPath, keyPath, err := Write(dir, Options{Hosts: []string{"localhost", "envoy", "127.0.0.1"}, Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatalf("key pair: %v", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	for _, host := range []string{"localhost", "envoy", "127.0.0.1"} {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: host, Roots: pool}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: pool}); err == nil {
		t.Error("verified for a host not in the certificate")
	}
	for path, want := range map[string]os.FileMode{keyPath: 0o600, certPath: 0o644} {
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s mode %v (%v), want %v", path, st.Mode().Perm(), err, want)
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no hosts", Options{Validity: time.Hour}, "at least one host"},
		{"empty host", Options{Hosts: []string{"a", " "}, Validity: time.Hour}, "empty host"},
		{"no validity", Options{Hosts: []string{"a"}}, "validity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := Generate(tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}
