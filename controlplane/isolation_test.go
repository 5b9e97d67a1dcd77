package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/credentials"

	"github.com/scopegate/scopegate/demo/democert"
	"github.com/scopegate/scopegate/internal/spiffe"
	"github.com/scopegate/scopegate/internal/testing/envoysim"
)

// withAuthzTLS puts an authz.tls block (the test CA, this client certificate) into cfg.
func withAuthzTLS(cfg, caFile, certFile, keyFile string) string {
	return strings.Replace(cfg, "authz:\n  address: \"127.0.0.1:9191\"\n",
		fmt.Sprintf("authz:\n  address: \"127.0.0.1:9191\"\n  tls: {ca_file: %q, server_name: authz, cert_file: %q, key_file: %q}\n", caFile, certFile, keyFile), 1)
}

// Fleet isolation: authz.tls's client certificate is pushed (key and all) to every fleet, so
// one that carries a fleet's xDS identity would let any fleet's Envoy connect to xds as that
// fleet. xds refuses such a certificate at start, naming authz.tls.cert_file; a dedicated
// authz-client identity is accepted, and a fleet's own authz_tls goes to that fleet only.
func TestAuthzClientCertificateIsNoFleetIdentity(t *testing.T) {
	p := newADSPKI(t)
	envoyCert, envoyKey := p.issue(p.ca, "envoy", democert.Leaf{Name: "envoy", Client: true, URIs: []string{spiffe.FleetID(trustDomain, "edge")}})
	clientCert, clientKey := p.issue(p.ca, "authz-client", democert.Leaf{Name: "authz-client", Client: true, URIs: []string{spiffe.ID(trustDomain, "authz-client")}})

	dir := t.TempDir()
	path := filepath.Join(dir, "xds.yaml")
	h := &harness{t: t, dir: dir, path: path}
	h.writeFile(withAuthzTLS(p.config(), p.caFile, envoyCert, envoyKey))
	_, err := New(context.Background(), Options{ConfigPath: path, Listen: "127.0.0.1:0", Admin: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "authz.tls.cert_file") || !strings.Contains(err.Error(), "spiffe://example.org/fleet/edge") {
		t.Fatalf("New with edge's identity as the authz client certificate = %v; want it refused naming authz.tls.cert_file", err)
	}

	// The internal fleet gets a certificate of its own; edge gets authz.tls's.
	internalCert, internalKey := p.issue(p.ca, "authz-client-internal", democert.Leaf{Name: "authz-client-internal", Client: true,
		URIs: []string{spiffe.ID(trustDomain, "authz-client/internal")}})
	cfg := strings.Replace(withAuthzTLS(p.config(), p.caFile, clientCert, clientKey), "  - name: internal\n",
		fmt.Sprintf("  - name: internal\n    authz_tls: {cert_file: %q, key_file: %q}\n", internalCert, internalKey), 1)
	h = start(t, cfg)
	secretOf := func(fleet, stem string) []byte {
		t.Helper()
		creds := credentials.NewTLS(p.envoyTLS(p.ca, stem, spiffe.FleetID(trustDomain, fleet)))
		c, err := envoysim.SotW(context.Background(), dialADS(t, h, creds), &core.Node{Id: fleet + "-1", Cluster: fleet}, envoysim.Options{KeepResources: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		h.waitHolds(c, fleet, pushOrder...)
		s, _ := c.Resource(resource.SecretType, "scopegate_authz.client").(*tlsv3.Secret)
		return s.GetTlsCertificate().GetCertificateChain().GetInlineBytes()
	}
	edge, internal := secretOf("edge", "envoy-edge"), secretOf("internal", "envoy-internal")
	if len(edge) == 0 || len(internal) == 0 || string(edge) == string(internal) {
		t.Fatalf("edge and internal got the same (or no) authz client certificate")
	}
	if !strings.Contains(string(internal), "BEGIN CERTIFICATE") || string(internal) != string(readFile(t, internalCert)) || string(edge) != string(readFile(t, clientCert)) {
		t.Fatal("a fleet did not get its own authz client certificate")
	}

	// A fleet's own authz_tls is checked the same way.
	h.writeFile(strings.Replace(cfg, internalCert, envoyCert, 1))
	h.reload <- struct{}{}
	h.eventually("reload rejected", func() bool { return !h.status().Config.LastReload.OK })
	if msg := h.status().Config.LastReload.Error; !strings.Contains(msg, `fleets["internal"].authz_tls.cert_file`) {
		t.Fatalf("reload error %q; want it to name the fleet's authz_tls.cert_file", msg)
	}
}

// ADS with tls but no client_ca_file authenticates nobody: any client can name any fleet and
// receive its keys. It is refused like plaintext ADS, unless insecure_plaintext_secrets.
func TestServerOnlyTLSIsPlaintextForSecrets(t *testing.T) {
	p := newADSPKI(t)
	serverOnly := strings.Replace(p.config(), fmt.Sprintf(", client_ca_file: %q, trust_domain: %s", p.caFile, trustDomain), "", 1)
	if serverOnly == p.config() {
		t.Fatal("test config has no client_ca_file to drop")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "xds.yaml")
	h := &harness{t: t, dir: dir, path: path}
	h.writeFile(serverOnly)
	_, err := New(context.Background(), Options{ConfigPath: path, Listen: "127.0.0.1:0", Admin: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "insecure_plaintext_secrets") || !strings.Contains(err.Error(), "client_ca_file") {
		t.Fatalf("New = %v; want a refusal naming insecure_plaintext_secrets and client_ca_file", err)
	}
	h = start(t, "insecure_plaintext_secrets: true\n"+serverOnly)
	if st := h.status(); st.Config.ADSTLS != "server" || len(st.Config.Warnings) != 1 || !strings.Contains(st.Config.Warnings[0], "client_ca_file") {
		t.Fatalf("/status config = %+v; want a warning that any client gets the keys", st.Config)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
