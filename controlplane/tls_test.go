package controlplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/scopegate/scopegate/demo/democert"
	"github.com/scopegate/scopegate/internal/certreload"
	"github.com/scopegate/scopegate/internal/spiffe"
	"github.com/scopegate/scopegate/internal/testing/envoysim"
)

const trustDomain = "example.org"

// adsPKI issues the ADS server's certificate and Envoy client certificates, each bound to a
// fleet by its SPIFFE ID.
type adsPKI struct {
	t       *testing.T
	dir     string
	ca      *democert.CA
	caFile  string
	foreign *democert.CA
}

func newADSPKI(t *testing.T) *adsPKI {
	t.Helper()
	p := &adsPKI{t: t, dir: t.TempDir()}
	var err error
	if p.ca, err = democert.NewCA("test CA", time.Hour, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if p.foreign, err = democert.NewCA("foreign CA", time.Hour, time.Time{}); err != nil {
		t.Fatal(err)
	}
	p.caFile = filepath.Join(p.dir, "ca.crt")
	if err := p.ca.WriteCA(p.caFile); err != nil {
		t.Fatal(err)
	}
	p.issue(p.ca, "xds", democert.Leaf{Name: "xds", Hosts: []string{"xds", "127.0.0.1"}, Server: true})
	return p
}

func (p *adsPKI) issue(ca *democert.CA, stem string, l democert.Leaf) (string, string) {
	p.t.Helper()
	c, k, err := ca.WriteLeaf(p.dir, stem, l)
	if err != nil {
		p.t.Fatal(err)
	}
	return c, k
}

// config is testConfig with mutual TLS for ADS and an HTTPS listener (a private key pushed).
func (p *adsPKI) config() string {
	certFile, keyFile := writeCert(p.t, p.t.TempDir(), "edge.test")
	return fmt.Sprintf("tls: {cert_file: %q, key_file: %q, client_ca_file: %q, trust_domain: %s}\n",
		filepath.Join(p.dir, "xds.crt"), filepath.Join(p.dir, "xds.key"), p.caFile, trustDomain) +
		strings.Replace(testConfig(cfgOpt{}), "port: 10000\n", "port: 10000\n        tls: {cert_file: "+certFile+", key_file: "+keyFile+"}\n", 1)
}

// envoyTLS is an Envoy's client TLS config: trusting the test CA, presenting a certificate of
// ca with uris (none when stem is "").
func (p *adsPKI) envoyTLS(ca *democert.CA, stem string, uris ...string) *tls.Config {
	p.t.Helper()
	cfg, err := certreload.ClientConfig(p.caFile, "", "", "xds")
	if err != nil {
		p.t.Fatal(err)
	}
	if stem != "" {
		certFile, keyFile := p.issue(ca, stem, democert.Leaf{Name: stem, URIs: uris, Client: true})
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			p.t.Fatal(err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	return cfg
}

func dialADS(t *testing.T, h *harness, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(h.svc.XDSAddr(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func waitEnded(t *testing.T, c *envoysim.Client) error {
	t.Helper()
	select {
	case <-c.Done():
		return c.Err()
	case <-time.After(waitTimeout):
		t.Fatal("stream stayed open")
		return nil
	}
}

// TestADSMutualTLS: over mutual TLS, an Envoy whose certificate names its fleet gets the
// fleet's config, secrets included; a certificate naming another fleet, or no fleet, is
// refused with PermissionDenied (logged, counted), and never receives anything.
func TestADSMutualTLS(t *testing.T) {
	p := newADSPKI(t)
	h := start(t, p.config())
	edge := credentials.NewTLS(p.envoyTLS(p.ca, "envoy-edge", spiffe.FleetID(trustDomain, "edge")))

	for _, proto := range []string{"sotw", "delta"} {
		t.Run("own fleet/"+proto, func(t *testing.T) {
			conn := dialADS(t, h, edge)
			c := newClient(t, conn, proto, "edge-1", "edge")
			h.waitHolds(c, "edge", pushOrder...)
			if got := c.Names(resource.SecretType); len(got) != 1 {
				t.Errorf("secrets = %v", got)
			}
		})
	}

	refused := []struct {
		name  string
		creds credentials.TransportCredentials
		fleet string
	}{
		{"certificate of another fleet", credentials.NewTLS(p.envoyTLS(p.ca, "envoy-internal", spiffe.FleetID(trustDomain, "internal"))), "edge"},
		{"certificate of another trust domain", credentials.NewTLS(p.envoyTLS(p.ca, "envoy-other-td", spiffe.FleetID("evil.org", "edge"))), "edge"},
		{"certificate without a SPIFFE ID", credentials.NewTLS(p.envoyTLS(p.ca, "envoy-anon")), "edge"},
		{"certificate with two SPIFFE IDs", credentials.NewTLS(p.envoyTLS(p.ca, "envoy-two",
			spiffe.FleetID(trustDomain, "edge"), spiffe.FleetID(trustDomain, "internal"))), "edge"},
		{"edge certificate asking for another fleet", edge, "internal"},
	}
	denied := 0.0
	for _, tt := range refused {
		for _, proto := range []string{"sotw", "delta"} {
			t.Run(tt.name+"/"+proto, func(t *testing.T) {
				c := newClient(t, dialADS(t, h, tt.creds), proto, "n-1", tt.fleet)
				err := waitEnded(t, c)
				if s, _ := status.FromError(err); s.Code() != codes.PermissionDenied || !strings.Contains(s.Message(), "URI SAN is spiffe://example.org/fleet/"+tt.fleet) {
					t.Errorf("stream ended with %v, want PermissionDenied naming the SPIFFE ID", err)
				}
				if len(c.Log()) != 0 {
					t.Errorf("refused node received %v", c.Log())
				}
				denied++
			})
		}
	}
	if got := h.metric("scopegate_xds_identity_denials_total", map[string]string{"reason": "fleet_mismatch"}); got != denied {
		t.Errorf("identity denials = %v, want %v", got, denied)
	}

	handshake := []struct {
		name  string
		creds credentials.TransportCredentials
		want  string
	}{
		{"plaintext", insecure.NewCredentials(), ""},
		{"no client certificate", credentials.NewTLS(p.envoyTLS(p.ca, "")), "certificate required"},
		{"client certificate from another CA", credentials.NewTLS(p.envoyTLS(p.foreign, "envoy-foreign", spiffe.FleetID(trustDomain, "edge"))), ""},
		{"expired client certificate", credentials.NewTLS(func() *tls.Config {
			c := p.envoyTLS(p.ca, "")
			certFile, keyFile := p.issue(p.ca, "envoy-expired", democert.Leaf{Name: "envoy", Client: true,
				URIs:      []string{spiffe.FleetID(trustDomain, "edge")},
				NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
			pair, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
			return c
		}()), ""},
		{"wrong server name", credentials.NewTLS(func() *tls.Config {
			c := p.envoyTLS(p.ca, "envoy-edge2", spiffe.FleetID(trustDomain, "edge"))
			c.ServerName = "authz"
			return c
		}()), "not authz"},
	}
	for _, tt := range handshake {
		t.Run("handshake refused: "+tt.name, func(t *testing.T) {
			c, err := envoysim.SotW(context.Background(), dialADS(t, h, tt.creds), h.node("n", "edge"), envoysim.Options{})
			if err == nil {
				t.Cleanup(c.Close)
				err = waitEnded(t, c)
			}
			// The server's alert can lose the race with the client's first write, which then
			// sees the closed connection instead.
			matched := false
			for _, w := range []string{tt.want, "broken pipe", "connection reset"} {
				matched = matched || strings.Contains(fmt.Sprint(err), w)
			}
			if status.Code(err) != codes.Unavailable || !matched {
				t.Errorf("err = %v, want Unavailable mentioning %q", err, tt.want)
			}
		})
	}
	// Each refusal is counted under its reason.
	for _, reason := range []string{"no_client_certificate", "unknown_authority", "expired_certificate", "client_rejected"} {
		h.eventually("handshake failure "+reason+" counted", func() bool {
			mfs, err := h.reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() != "scopegate_tls_handshake_failures_total" {
					continue
				}
				for _, m := range mf.GetMetric() {
					labels := map[string]string{}
					for _, l := range m.GetLabel() {
						labels[l.GetName()] = l.GetValue()
					}
					if labels["endpoint"] == "xds" && labels["reason"] == reason && m.GetCounter().GetValue() > 0 {
						return true
					}
				}
			}
			return false
		})
	}
	if st := h.status(); st.Config.ADSTLS != "mutual" || len(st.Config.Warnings) != 0 {
		t.Errorf("/status config = %+v, want ads_tls mutual without warnings", st.Config)
	}
}

func newClient(t *testing.T, conn *grpc.ClientConn, proto, id, fleet string) *envoysim.Client {
	t.Helper()
	node := &core.Node{Id: id, Cluster: fleet}
	var (
		c   *envoysim.Client
		err error
	)
	if proto == "delta" {
		c, err = envoysim.Delta(context.Background(), conn, node, envoysim.Options{})
	} else {
		c, err = envoysim.SotW(context.Background(), conn, node, envoysim.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestStreamCannotSwitchFleet: a request naming another fleet on an admitted stream is
// refused (go-control-plane would otherwise serve the new node's fleet on it).
func TestStreamCannotSwitchFleet(t *testing.T) {
	h := start(t, testConfig(cfgOpt{}))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(h.conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: h.node("n", "edge"), TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: h.node("n", "internal"), TypeUrl: resource.ListenerType}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err = stream.Recv()
		if err != nil {
			break
		}
	}
	if s, _ := status.FromError(err); s.Code() != codes.PermissionDenied || !strings.Contains(s.Message(), `cannot switch to fleet "internal"`) {
		t.Fatalf("stream ended with %v, want PermissionDenied", err)
	}
	if got := h.metric("scopegate_xds_identity_denials_total", map[string]string{"reason": "fleet_changed"}); got != 1 {
		t.Errorf("fleet_changed denials = %v, want 1", got)
	}
}

// TestInsecurePlaintextSecrets: a private key over plaintext ADS stops start-up with an error
// naming insecure_plaintext_secrets; set to true it starts, warning in /status; and a reload
// can't lean on a tls block the running server did not start with.
func TestInsecurePlaintextSecrets(t *testing.T) {
	certFile, keyFile := writeCert(t, t.TempDir(), "edge.test")
	withKey := strings.Replace(testConfig(cfgOpt{}), "port: 10000\n", "port: 10000\n        tls: {cert_file: "+certFile+", key_file: "+keyFile+"}\n", 1)

	dir := t.TempDir()
	path := filepath.Join(dir, "xds.yaml")
	h := &harness{t: t, dir: dir, path: path}
	h.writeFile(withKey)
	_, err := New(context.Background(), Options{ConfigPath: path, Listen: "127.0.0.1:0", Admin: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "insecure_plaintext_secrets") {
		t.Fatalf("New = %v, want an error naming insecure_plaintext_secrets", err)
	}

	h = start(t, "insecure_plaintext_secrets: true\n"+withKey)
	c := h.sotw("edge-1", "edge", envoysim.Options{})
	h.waitHolds(c, "edge", pushOrder...)
	st := h.status()
	if st.Config.ADSTLS != "off" || len(st.Config.Warnings) != 1 || !strings.Contains(st.Config.Warnings[0], "insecure_plaintext_secrets") {
		t.Errorf("/status config = %+v, want a warning about insecure_plaintext_secrets", st.Config)
	}

	// The file gains a tls block and drops the switch: the running server is still plaintext.
	p := newADSPKI(t)
	h.writeFile(p.config())
	h.reload <- struct{}{}
	h.eventually("reload rejected", func() bool { return !h.status().Config.LastReload.OK })
	if msg := h.status().Config.LastReload.Error; !strings.Contains(msg, "started without tls") {
		t.Errorf("last reload error = %q, want it to say the server started without tls", msg)
	}
}

// TestADSCertificateRotation: the control plane's own certificate is reloaded from disk: new
// connections get the new one, and an open ADS stream keeps receiving pushes.
func TestADSCertificateRotation(t *testing.T) {
	p := newADSPKI(t)
	cfg := p.config()
	h := start(t, cfg)
	edge := credentials.NewTLS(p.envoyTLS(p.ca, "envoy-edge", spiffe.FleetID(trustDomain, "edge")))
	c := newClient(t, dialADS(t, h, edge), "sotw", "edge-1", "edge")
	h.waitHolds(c, "edge", pushOrder...)
	old := h.svc.tls.Leaf().SerialNumber

	changed := h.svc.tls.Changed()
	p.issue(p.ca, "xds", democert.Leaf{Name: "xds-rotated", Hosts: []string{"xds", "127.0.0.1"}, Server: true})
	select {
	case <-changed:
	case <-time.After(waitTimeout):
		t.Fatal("the rotated ADS certificate was not loaded")
	}
	if h.svc.tls.Leaf().SerialNumber.Cmp(old) == 0 {
		t.Fatal("serial unchanged")
	}

	// A new connection handshakes with the new certificate.
	conn, err := tls.Dial("tcp", h.svc.XDSAddr(), p.envoyTLS(p.ca, "envoy-edge-2", spiffe.FleetID(trustDomain, "edge")))
	if err != nil {
		t.Fatal(err)
	}
	got := conn.ConnectionState().PeerCertificates[0].SerialNumber
	conn.Close()
	if got.Cmp(h.svc.tls.Leaf().SerialNumber) != 0 {
		t.Errorf("new connection got serial %x, want the rotated %x", got, h.svc.tls.Leaf().SerialNumber)
	}

	// The open stream still works: a config change reaches it.
	before := c.Version(resource.RouteType)
	h.writeFile(strings.Replace(cfg, "scopes: [orders:read]", "scopes: [orders:list]", 1))
	h.eventually("route change pushed over the stream opened before the rotation", func() bool {
		v := c.Version(resource.RouteType)
		return v != before && v == h.versions("edge")[resource.RouteType]
	})
	if err := c.Err(); err != nil {
		t.Errorf("stream opened before the rotation: %v", err)
	}
}
