package remote

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The bundle server over TLS, trusted through ca_file, requiring a client certificate.
func TestClientCertificate(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "scopegate-authz"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	clientCert, _ := x509.ParseCertificate(der)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b *pem.Block) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile := write("client.crt", &pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyFile := write("client.key", &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})

	srv := &server{}
	srv.set(makeBundle(t, "t1", policySource("t1", false), nil, ""), `"t1"`)
	hs := httptest.NewUnstartedServer(srv)
	pool := x509.NewCertPool()
	pool.AddCert(clientCert)
	hs.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	hs.StartTLS()
	defer hs.Close()
	caFile := write("server-ca.crt", &pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw})

	c := bundleConfig(hs.URL)
	c.CAFile = caFile
	noCert := newRig(t, c)
	if err := noCert.src.Trigger(t.Context()); err == nil || noCert.revision() != "" {
		t.Fatalf("without a client certificate: %v, revision %q; want refused", err, noCert.revision())
	}
	c.ClientCertFile, c.ClientKeyFile = certFile, keyFile
	r := newRig(t, c)
	if err := r.src.Trigger(t.Context()); err != nil || r.revision() != "t1" {
		t.Fatalf("with the client certificate: %v, revision %q", err, r.revision())
	}
}
