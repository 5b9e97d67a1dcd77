package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// With policy.watch, the server reloads its policy when the file changes: the new revision
// goes live and decides the next Check.
func TestPolicyWatchWiring(t *testing.T) {
	dir := t.TempDir()
	rule := func(allow bool) []byte {
		return fmt.Appendf(nil, "package scopegate.authz\n\ndecision := {\"allow\": %v, \"reason\": \"fixed\"}\n", allow)
	}
	file := filepath.Join(dir, "authz.rego")
	if err := os.WriteFile(file, rule(false), 0o600); err != nil {
		t.Fatal(err)
	}
	k1 := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k1)
	defer is.Close()
	srv := startServerWithPolicy(t, is, dir, true)

	conn := dial(t, srv.GRPCAddr())
	waitServing(t, healthpb.NewHealthClient(conn))
	client := authv3.NewAuthorizationClient(conn)
	tok := "Bearer " + testissuer.Sign(k1, is.Standard("orders-api", "a", "orders:read", time.Minute), nil)
	check := func() codes.Code {
		t.Helper()
		resp, err := client.Check(context.Background(), envoyRequest("GET", "/orders", tok, map[string]string{"route": "orders-read", "scopes": "orders:read"}, nil))
		if err != nil {
			t.Fatal(err)
		}
		return codes.Code(resp.GetStatus().GetCode())
	}
	if got := check(); got != codes.PermissionDenied {
		t.Fatalf("first revision: %v, want PermissionDenied", got)
	}
	first := srv.engine.Revision().ID
	changed := srv.engine.Changed()
	// Replaced by rename, as editors and config management do.
	tmp := filepath.Join(dir, ".authz.rego.tmp")
	if err := os.WriteFile(tmp, rule(true), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("the changed policy never went live")
	}
	if rev := srv.engine.Revision().ID; rev == first {
		t.Fatalf("revision still %s", rev)
	}
	if got := check(); got != codes.OK {
		t.Fatalf("new revision: %v, want OK", got)
	}
}
