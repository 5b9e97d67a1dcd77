package idp

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/demo/democert"
)

// With tls (and client_ca_file) `scopegate idp` serves HTTPS, and a client that presents a
// certificate from that CA gets a certificate-bound access token (cnf x5t#S256); one without
// a certificate still gets a plain token (the certificate is optional on the token endpoint).
func TestServeTLSBindsClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, err := democert.NewCA("test CA", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCA(filepath.Join(dir, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := ca.WriteLeaf(dir, "idp", democert.Leaf{Name: "idp", Hosts: []string{"127.0.0.1"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	clientPEM, clientKeyPEM, err := ca.Issue(democert.Leaf{Name: "reporting-job", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // Serve binds it again
	issuer := "https://" + addr
	cancel, done := serveYAML(t, `
listen: "`+addr+`"
admin: "127.0.0.1:0"
issuer: "`+issuer+`"
api: {audience: orders-api, scopes: [{name: "orders:read"}]}
clients:
  - {id: reporting-job, secret: reporting-secret, scopes: ["orders:read"], grant_types: [client_credentials]}
keys: {algorithm: ES256}
tls: {cert_file: `+srvCert+`, key_file: `+srvKey+`, client_ca_file: `+filepath.Join(dir, "ca.crt")+`}
`)
	t.Cleanup(func() { cancel(); <-done })

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	pair, err := tls.X509KeyPair(clientPEM, clientKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	token := func(certs []tls.Certificate) map[string]any {
		t.Helper()
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
		var resp *http.Response
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) { // until Serve listens
			resp, err = hc.PostForm(issuer+PathToken, url.Values{"grant_type": {"client_credentials"},
				"client_id": {"reporting-job"}, "client_secret": {"reporting-secret"}})
			if err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(b, &tr); err != nil || tr.AccessToken == "" {
			t.Fatalf("token response %d %s", resp.StatusCode, b)
		}
		payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tr.AccessToken, ".")[1])
		var claims map[string]any
		if err := json.Unmarshal(payload, &claims); err != nil {
			t.Fatal(err)
		}
		return claims
	}
	sum := sha256.Sum256(pair.Certificate[0])
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	cnf, _ := token([]tls.Certificate{pair})["cnf"].(map[string]any)
	if cnf["x5t#S256"] != want {
		t.Fatalf("with a client certificate: cnf %v, want x5t#S256 %s", cnf, want)
	}
	if cnf := token(nil)["cnf"]; cnf != nil {
		t.Fatalf("without a client certificate: cnf %v, want none", cnf)
	}
}
