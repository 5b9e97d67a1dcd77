package oauthclient

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/demo/idp"
	"github.com/scopegate/scopegate/internal/oauth"
)

// A client that presents a certificate (verified against the provider's client CA) on the
// token request gets a certificate-bound token (RFC 8705 §3): cnf["x5t#S256"] is the
// certificate's thumbprint. Without a certificate, or with one from another CA, the token is
// a plain bearer token.
func TestCertificateBoundTokens(t *testing.T) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "clients CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	clientCert := func(signer *x509.Certificate, signerKey *ecdsa.PrivateKey) (tls.Certificate, string) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "reporting-job"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		if signer == nil {
			signer, signerKey = tmpl, k // self-signed: from no CA the provider trusts
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &k.PublicKey, signerKey)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(der)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, base64.RawURLEncoding.EncodeToString(sum[:])
	}

	srv := httptest.NewUnstartedServer(nil)
	issuer := "https://" + srv.Listener.Addr().String()
	cfg, err := idp.Parse([]byte(strings.Replace(idpConfig, "http://placeholder", issuer, 1)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := idp.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	srv.Config.Handler = p.Handler()
	srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	withCert := func(c *tls.Certificate) *http.Client {
		tr := srv.Client().Transport.(*http.Transport).Clone()
		if c != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*c}
		}
		return &http.Client{Transport: tr}
	}
	get := func(hc *http.Client) (*Entry, error) {
		return ClientCredentials(t.Context(), hc, ClientCredentialsOptions{
			Issuer: issuer, TokenURL: issuer + idp.PathToken, ClientID: "reporting-job", Secret: "reporting-secret"})
	}
	x5tOf := func(e *Entry) string {
		d, err := oauth.Decode(e.AccessToken, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cnf, _ := d.Claims["cnf"].(map[string]any)
		s, _ := cnf["x5t#S256"].(string)
		return s
	}

	cert, x5t := clientCert(ca, caKey)
	e, err := get(withCert(&cert))
	if err != nil {
		t.Fatal(err)
	}
	if got := x5tOf(e); got != x5t {
		t.Fatalf("cnf x5t#S256 = %q, want the client certificate's %q", got, x5t)
	}
	e, err = get(withCert(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := x5tOf(e); got != "" {
		t.Fatalf("without a client certificate: cnf x5t#S256 = %q, want none", got)
	}
	// A certificate from no trusted CA binds nothing (Go's client does not even offer it, as
	// the provider names its acceptable CAs; a client that did would fail the handshake).
	foreign, _ := clientCert(nil, nil)
	e, err = get(withCert(&foreign))
	if err != nil {
		t.Fatal(err)
	}
	if got := x5tOf(e); got != "" {
		t.Fatalf("with a foreign certificate: cnf x5t#S256 = %q, want none", got)
	}
}
