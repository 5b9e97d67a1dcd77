package server

import (
	"context"
	"crypto/tls"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scopegate/scopegate/internal/certreload"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// floor is the no-op ext_authz server: it answers OK at once, so a benchmark against it
// measures gRPC, the transport and the client alone.
type floor struct {
	authv3.UnimplementedAuthorizationServer
}

var floorOK = &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}}

func (floor) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return floorOK, nil
}

// startFloor serves the floor on loopback, over TLS from r when r is not nil (the same
// reloading tls.Config scopegate serves with).
func startFloor(b *testing.B, r *certreload.Reloader) (addr string, stop func()) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var opts []grpc.ServerOption
	if r != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(r.ServerConfig())))
	}
	s := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(s, floor{})
	go func() { _ = s.Serve(ln) }()
	return ln.Addr().String(), s.Stop
}

// startAuthz starts scopegate authz and returns its address and a stop function, so each
// case runs with only its own server alive (another one's heap would cost GC time).
func startAuthz(b *testing.B, is *testissuer.Issuer, extra string) (addr string, stop func()) {
	srv := startServer(b, is, extra)
	return srv.GRPCAddr(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}

// processCPU is the user and system CPU time this process has used, in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkWarmCheckTLS: warm Checks (a token already verified, the built-in policy's
// decision reused) over real gRPC on loopback, scopegate authz against the no-op floor, each
// over plaintext and over mutual TLS, in one run. Both ends share the machine, so the
// ns/op is client and server CPU together; compare within one run:
//
//	go test -run '^$' -bench 'BenchmarkWarmCheckTLS|BenchmarkTLSHandshake' -benchmem ./extauthz/server/
func BenchmarkWarmCheckTLS(b *testing.B) {
	key := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(key)
	defer is.Close()
	p := newTestPKI(b)
	c := is.Standard("orders-api", "alice", "orders:read", time.Hour)
	c["client_id"] = "orders-cli"
	req := envoyRequest("GET", "/orders/1", "Bearer "+testissuer.Sign(key, c, nil),
		map[string]string{"route": "orders-read", "scopes": "orders:read"}, nil)
	mtls := credentials.NewTLS(p.clientTLS(b, "authz", p.clientCert, p.clientKey))
	floorTLS, err := certreload.New(certreload.Options{Name: "floor", Files: certreload.Files{
		CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.caFile}})
	if err != nil {
		b.Fatal(err)
	}

	cases := []struct {
		name  string
		start func() (string, func())
		creds credentials.TransportCredentials
	}{
		{"floor/plaintext", func() (string, func()) { return startFloor(b, nil) }, insecure.NewCredentials()},
		{"floor/mtls", func() (string, func()) { return startFloor(b, floorTLS) }, mtls},
		{"authz/plaintext", func() (string, func()) { return startAuthz(b, is, "") }, insecure.NewCredentials()},
		{"authz/mtls", func() (string, func()) { return startAuthz(b, is, p.tlsBlock("tls")) }, mtls},
	}
	for _, tc := range cases {
		// One server and one connection per case, made before b.Run (whose function runs
		// once per b.N tried) and stopped after it.
		addr, stop := tc.start()
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tc.creds))
		if err != nil {
			b.Fatal(err)
		}
		client := authv3.NewAuthorizationClient(conn)
		// Warm: wait until the issuer's keys are in and the token is cached.
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := client.Check(context.Background(), req)
			if err == nil && resp.GetStatus().GetCode() == int32(codes.OK) {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s never allowed: %v %v", tc.name, resp, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		runtime.GC()
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Check(context.Background(), req)
					if err != nil || resp.GetStatus().GetCode() != int32(codes.OK) {
						b.Errorf("Check: %v %v", resp, err)
						return
					}
				}
			})
			b.StopTimer()
			// CPU per Check (client and server): steadier than wall time on a shared machine.
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
		conn.Close()
		stop()
	}
}

// BenchmarkTLSHandshake: one new connection's mutual TLS handshake (TLS 1.3, ECDSA P-256,
// client and server in this process) against scopegate's reloading server config: the cost
// Envoy pays per new connection to authz, both ends together.
func BenchmarkTLSHandshake(b *testing.B) {
	p := newTestPKI(b)
	r, err := certreload.New(certreload.Options{Name: "bench", Files: certreload.Files{
		CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.caFile}})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		version uint16
	}{{"tls1.3", tls.VersionTLS13}, {"tls1.2", tls.VersionTLS12}} {
		b.Run(tc.name, func(b *testing.B) {
			client := p.clientTLS(b, "authz", p.clientCert, p.clientKey)
			client.MaxVersion = tc.version
			client.ClientSessionCache = nil // every connection a full handshake
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				c, s := net.Pipe()
				errc := make(chan error, 1)
				go func() { errc <- tls.Server(s, r.ServerConfig()).Handshake() }()
				if err := tls.Client(c, client).Handshake(); err != nil {
					b.Fatal(err)
				}
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
				c.Close()
				s.Close()
			}
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
