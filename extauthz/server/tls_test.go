package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/scopegate/scopegate/demo/democert"
	"github.com/scopegate/scopegate/internal/certreload"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// testPKI is a CA with a server certificate for "authz" and an Envoy client certificate,
// plus a foreign CA, in a temporary directory.
type testPKI struct {
	dir, caFile             string
	ca, foreign             *democert.CA
	serverCert, serverKey   string
	clientCert, clientKey   string
	foreignCert, foreignKey string
	expiredCert, expiredKey string
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
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
	p.serverCert, p.serverKey = p.issue(t, p.ca, "authz", democert.Leaf{Name: "authz", Hosts: []string{"authz"}, Server: true})
	p.clientCert, p.clientKey = p.issue(t, p.ca, "envoy", democert.Leaf{Name: "envoy", Client: true})
	p.foreignCert, p.foreignKey = p.issue(t, p.foreign, "foreign", democert.Leaf{Name: "envoy", Client: true})
	p.expiredCert, p.expiredKey = p.issue(t, p.ca, "expired", democert.Leaf{Name: "envoy", Client: true,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	return p
}

func (p *testPKI) issue(t testing.TB, ca *democert.CA, stem string, l democert.Leaf) (string, string) {
	t.Helper()
	c, k, err := ca.WriteLeaf(p.dir, stem, l)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

func (p *testPKI) tlsBlock(key string) string {
	return fmt.Sprintf("%s: {cert_file: %q, key_file: %q, client_ca_file: %q}\n", key, p.serverCert, p.serverKey, p.caFile)
}

// clientTLS trusts the test CA, expects serverName, and always presents certFile (when set),
// whoever the server says it accepts.
func (p *testPKI) clientTLS(t testing.TB, serverName, certFile, keyFile string) *tls.Config {
	t.Helper()
	cfg, err := certreload.ClientConfig(p.caFile, "", "", serverName)
	if err != nil {
		t.Fatal(err)
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	return cfg
}

func dialCreds(t testing.TB, target string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestMutualTLSRefusals: Check and health share the TLS port; every client that can't prove
// itself is refused at the handshake, over real gRPC on loopback.
func TestMutualTLSRefusals(t *testing.T) {
	is := testissuer.New(testissuer.NewKey("k1", "RS256"))
	defer is.Close()
	p := newTestPKI(t)
	srv := startServer(t, is, p.tlsBlock("tls"))

	tests := []struct {
		name  string
		creds credentials.TransportCredentials
		want  string // "" : the call succeeds; else "|"-separated alternatives
	}{
		{"mutual TLS", credentials.NewTLS(p.clientTLS(t, "authz", p.clientCert, p.clientKey)), ""},
		{"plaintext", insecure.NewCredentials(), "connection"},
		// A server-side refusal's alert can lose the race with the client's first write.
		{"TLS without a client certificate", credentials.NewTLS(p.clientTLS(t, "authz", "", "")), "certificate required|broken pipe|connection reset"},
		{"client certificate from another CA", credentials.NewTLS(p.clientTLS(t, "authz", p.foreignCert, p.foreignKey)),
			"unknown certificate authority|broken pipe|connection reset"},
		{"expired client certificate", credentials.NewTLS(p.clientTLS(t, "authz", p.expiredCert, p.expiredKey)), "expired certificate|broken pipe|connection reset"},
		{"server name not in the certificate (wrong SNI/SAN)", credentials.NewTLS(p.clientTLS(t, "xds", p.clientCert, p.clientKey)), "valid for authz, not xds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := dialCreds(t, srv.GRPCAddr(), tt.creds)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("health over mTLS: %v", err)
				}
				return
			}
			matched := false
			for _, w := range strings.Split(tt.want, "|") {
				matched = matched || strings.Contains(fmt.Sprint(err), w)
			}
			if status.Code(err) != codes.Unavailable || !matched {
				t.Fatalf("err = %v, want Unavailable mentioning %q", err, tt.want)
			}
		})
	}
	// Each refusal is counted under its reason (the server may finish counting just after
	// the client has seen the alert).
	for _, reason := range []string{"not_tls", "no_client_certificate", "unknown_authority", "expired_certificate", "client_rejected"} {
		series := `scopegate_tls_handshake_failures_total{endpoint="grpc",reason="` + reason + `"} `
		for guard := time.Now().Add(10 * time.Second); !strings.Contains(httpGet(t, "http://"+srv.AdminAddr()+"/metrics", 200), series); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(guard) {
				t.Fatalf("/metrics lacks %s", series)
			}
		}
	}
}

// TestClientURISANs: with tls.client_uri_sans, authz serves only the client identities
// listed: the authz-client certificate gets its handshake; another certificate of the same
// CA (an Envoy's fleet identity, one without a URI) is refused at the handshake.
func TestClientURISANs(t *testing.T) {
	is := testissuer.New(testissuer.NewKey("k1", "RS256"))
	defer is.Close()
	p := newTestPKI(t)
	const allowed = "spiffe://example.org/authz-client"
	okCert, okKey := p.issue(t, p.ca, "authz-client", democert.Leaf{Name: "authz-client", Client: true, URIs: []string{allowed}})
	fleetCert, fleetKey := p.issue(t, p.ca, "envoy-edge", democert.Leaf{Name: "envoy", Client: true, URIs: []string{"spiffe://example.org/fleet/edge"}})
	block := strings.Replace(p.tlsBlock("tls"), "}\n", fmt.Sprintf(", client_uri_sans: [%q]}\n", allowed), 1)
	srv := startServer(t, is, block)
	for _, tt := range []struct {
		name              string
		certFile, keyFile string
		ok                bool
	}{
		{"the listed identity", okCert, okKey, true},
		{"a fleet identity of the same CA", fleetCert, fleetKey, false},
		{"a certificate of the same CA without a URI SAN", p.clientCert, p.clientKey, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn := dialCreds(t, srv.GRPCAddr(), credentials.NewTLS(p.clientTLS(t, "authz", tt.certFile, tt.keyFile)))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			if tt.ok != (err == nil) {
				t.Fatalf("health: %v, want ok=%v", err, tt.ok)
			}
			if err != nil && status.Code(err) != codes.Unavailable {
				t.Fatalf("err = %v, want Unavailable (the handshake refused)", err)
			}
		})
	}
	// Both refusals are counted as identity refusals, not as some other bad certificate.
	series := `scopegate_tls_handshake_failures_total{endpoint="grpc",reason="identity_not_allowed"} 2`
	for guard := time.Now().Add(10 * time.Second); !strings.Contains(httpGet(t, "http://"+srv.AdminAddr()+"/metrics", 200), series); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(guard) {
			t.Fatalf("/metrics lacks %s", series)
		}
	}
}

// TestTLSRotationKeepsOpenStreams: a new certificate on disk is served to new connections
// while an open health Watch stream (on the old connection) keeps working.
func TestTLSRotationKeepsOpenStreams(t *testing.T) {
	is := testissuer.New(testissuer.NewKey("k1", "RS256"))
	defer is.Close()
	p := newTestPKI(t)
	srv := startServer(t, is, p.tlsBlock("tls"))
	creds := credentials.NewTLS(p.clientTLS(t, "authz", p.clientCert, p.clientKey))

	old := dialCreds(t, srv.GRPCAddr(), creds)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := healthpb.NewHealthClient(old).Watch(ctx, &healthpb.HealthCheckRequest{Service: "rotation-probe"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // SERVICE_UNKNOWN: the stream is open
		t.Fatal(err)
	}
	oldSerial := srv.GRPCTLS.Leaf().SerialNumber

	changed := srv.GRPCTLS.Changed()
	p.issue(t, p.ca, "authz", democert.Leaf{Name: "authz-rotated", Hosts: []string{"authz"}, Server: true})
	select {
	case <-changed:
	case <-ctx.Done():
		t.Fatal("the rotated certificate was not loaded")
	}
	if srv.GRPCTLS.Leaf().SerialNumber.Cmp(oldSerial) == 0 {
		t.Fatal("serial unchanged after rotation")
	}

	srv.health.SetServingStatus("rotation-probe", healthpb.HealthCheckResponse_SERVING)
	resp, err := stream.Recv()
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("open stream after rotation: %v %v", resp, err)
	}
	var pOld, pNew peer.Peer
	if _, err := healthpb.NewHealthClient(old).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&pOld)); err != nil {
		t.Fatal(err)
	}
	fresh := dialCreds(t, srv.GRPCAddr(), creds)
	if _, err := healthpb.NewHealthClient(fresh).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&pNew)); err != nil {
		t.Fatal(err)
	}
	serial := func(p peer.Peer) string {
		return p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].SerialNumber.Text(16)
	}
	if got := serial(pOld); got != oldSerial.Text(16) {
		t.Errorf("old connection presents %s, want the certificate it was made with (%x)", got, oldSerial)
	}
	if got, want := serial(pNew), srv.GRPCTLS.Leaf().SerialNumber.Text(16); got != want {
		t.Errorf("new connection got %s, want the rotated %s", got, want)
	}
}

// TestUnixSocket: a sidecar listens on a Unix socket only its owner (or socket_group) may
// use, without TLS; the file goes away on shutdown.
func TestUnixSocket(t *testing.T) {
	is := testissuer.New(testissuer.NewKey("k1", "RS256"))
	defer is.Close()
	me, err := user.Current()
	if err != nil {
		t.Skip("no current user:", err)
	}
	group, err := user.LookupGroupId(me.Gid)
	if err != nil {
		t.Skip("no group for gid", me.Gid, err)
	}
	tests := []struct {
		name  string
		extra string
		mode  os.FileMode
	}{
		{"owner only", "", 0o600},
		{"socket_group", "socket_group: " + strconv.Quote(group.Name) + "\n", 0o660},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Socket paths are limited to ~108 bytes: t.TempDir() can be too long.
			dir, err := os.MkdirTemp("", "sg")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			sock := filepath.Join(dir, "authz.sock")
			if err := os.WriteFile(filepath.Join(dir, "stale"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			srv := startServer(t, is, strings.Replace("listen: unix://SOCK\n", "SOCK", sock, 1)+tt.extra)
			fi, err := os.Stat(sock)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != tt.mode {
				t.Errorf("socket mode = %v, want socket %v", fi.Mode(), tt.mode)
			}
			if gid := fi.Sys().(*syscall.Stat_t).Gid; strconv.Itoa(int(gid)) != me.Gid {
				t.Errorf("socket gid = %d, want %s", gid, me.Gid)
			}
			conn := dialCreds(t, srv.GRPCTarget(), insecure.NewCredentials())
			if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("health over the socket: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(sock); !os.IsNotExist(err) {
				t.Errorf("socket still there after shutdown: %v", err)
			}
		})
	}
}

// TestAdminTLS: the admin port takes the same block; a plain HTTP client is refused.
func TestAdminTLS(t *testing.T) {
	is := testissuer.New(testissuer.NewKey("k1", "RS256"))
	defer is.Close()
	p := newTestPKI(t)
	srv := startServer(t, is, p.tlsBlock("admin_tls"))
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: p.clientTLS(t, "authz", p.clientCert, p.clientKey)}}
	resp, err := client.Get("https://" + srv.AdminAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("healthz over TLS: %d %v", resp.StatusCode, resp.TLS)
	}
	// Go's TLS server answers a plain HTTP request with a 400 of its own, never the endpoint.
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + srv.AdminAddr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS admin port: %d, want 400", resp.StatusCode)
		}
	}
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: p.clientTLS(t, "authz", "", "")}}
	if _, err := noCert.Get("https://" + srv.AdminAddr() + "/healthz"); err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("admin without a client certificate: err = %v", err)
	}
}
