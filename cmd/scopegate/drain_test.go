package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/scopegate/scopegate/internal/checkreq"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestAuthzDrainsOnSIGTERM: `scopegate authz` on SIGTERM first says NOT_SERVING to an open
// health Watch (and 503 on /readyz) while its listener still takes new connections and
// answers Checks, for drain_delay; then it ends the Watch with UNAVAILABLE at once (an open
// Watch used to hold the exit for the whole shutdown_timeout) and exits within drain_delay
// and a second.
func TestAuthzDrainsOnSIGTERM(t *testing.T) {
	bin := binary(t)
	key := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(key)
	defer is.Close()
	const delay = 2 * time.Second
	grpcAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfg := strings.Replace(strings.Replace(authzYAML(t, is), `listen: "127.0.0.1:0"`, `listen: "`+grpcAddr+`"`, 1),
		`admin: "127.0.0.1:0"`, `admin: "`+adminAddr+`"`, 1) + "drain_delay: 2s\nshutdown_timeout: 15s\n"
	path := filepath.Join(t.TempDir(), "authz.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "authz", "--config", path)
	out := &lineWriter{marker: "scopegate authz serving", ready: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // failure path only
	defer cancel()
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatal(err)
	}
	for {
		r, err := watch.Recv()
		if err != nil {
			t.Fatalf("health watch before SIGTERM: %v\n%s", err, out)
		}
		if r.Status == healthpb.HealthCheckResponse_SERVING {
			break
		}
	}

	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("after SIGTERM the watch got %v %v, want NOT_SERVING\n%s", r, err, out)
	}
	// NOT_SERVING seen: the listener must still take a new connection and answer a Check.
	fresh, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	tok := testissuer.Sign(key, is.Standard("orders-api", "alice", "orders:read", time.Minute), nil)
	resp, err := authv3.NewAuthorizationClient(fresh).Check(ctx, checkreq.Request{Path: "/orders/1", Headers: map[string]string{"authorization": "Bearer " + tok},
		ContextExtensions: map[string]string{"route": "orders-read", "scopes": "orders:read"}}.MustBuild())
	if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("a Check on a new connection during the drain: %v %v; want allowed", resp, err)
	}
	hr, err := http.Get("http://" + adminAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready struct{ Status string }
	_ = json.NewDecoder(hr.Body).Decode(&ready)
	hr.Body.Close()
	if hr.StatusCode != http.StatusServiceUnavailable || ready.Status != "draining" {
		t.Fatalf("/readyz during the drain: %d %q, want 503 draining", hr.StatusCode, ready.Status)
	}
	if took := time.Since(sent); took >= delay {
		t.Skipf("the machine is too slow to observe the %s drain (%s)", delay, took)
	}

	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("the watch ended with %v, want Unavailable", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30s after SIGTERM\n%s", out)
	}
	if took := time.Since(sent); took < delay || took > delay+time.Second {
		t.Fatalf("exited %s after SIGTERM; want the %s drain and at most a second more\n%s", took, delay, out)
	}
}
