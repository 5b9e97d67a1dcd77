package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// lockedBuffer is a log sink safe to read while the server writes.

// meshServer starts authz with extra config (routes_file, routes, unmatched), logging to
// logs; reloaded (when set) hears of every routes_file reload attempt.
func meshServer(t *testing.T, is *testissuer.Issuer, extra string, logs *lockedBuffer, reloaded func()) (*Server, error) {
	t.Helper()
	cfg, err := config.Parse(fmt.Appendf(nil, `
listen: "127.0.0.1:0"
admin: "127.0.0.1:0"
issuers:
  - name: demo
    issuer: %q
    jwks_uri: %q
    audiences: [orders-api]
    require_typ: at+jwt
decision_log:
  output: "off"
%s`, is.Issuer, is.JWKSURL(), extra))
	if err != nil {
		return nil, err
	}
	srv, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		return nil, err
	}
	srv.RoutesReloaded = reloaded
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv, nil
}

const routesV1 = `
fleets:
  - name: mesh
    listeners:
      - name: gateway
        virtual_hosts:
          - name: api
            domains: ["api.example.com"]
            routes:
              - name: orders
                match: {prefix: /orders}
                scopes: [orders:read]
              - name: reports
                match: {prefix: /reports}
                scopes: [reports:read]
`

// routesV2 adds a route in front: the Checks of the load go on matching "orders".
var routesV2 = strings.Replace(routesV1, "            routes:\n", `            routes:
              - name: admin
                match: {path: /admin}
                scopes: [admin]
`, 1)

func writeRoutes(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil { // replaced whole, as config management does
		t.Fatal(err)
	}
}

// The route table reloads live while Checks run: none fails while tables swap, a bad file
// is refused (the last good table stays, /readyz says why), and each good one goes live.
func TestRoutesFileReloadUnderLoad(t *testing.T) {
	k := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k)
	defer is.Close()
	file := filepath.Join(t.TempDir(), "xds.yaml")
	writeRoutes(t, file, routesV1)
	reloaded := make(chan struct{}, 16)
	var logs lockedBuffer
	srv, err := meshServer(t, is, "routes_file: "+file, &logs, func() { reloaded <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "route table loaded (mesh mode)") || !strings.Contains(logs.String(), "unmatched=deny") {
		t.Fatalf("the start log does not say where routes come from:\n%s", logs.String())
	}
	conn := dial(t, srv.GRPCAddr())
	waitServing(t, healthpb.NewHealthClient(conn))
	client := authv3.NewAuthorizationClient(conn)
	bearer := func(scope string) string {
		return "Bearer " + testissuer.Sign(k, is.Standard("orders-api", "alice", scope, time.Hour), nil)
	}
	orders, admin := bearer("orders:read"), bearer("admin")
	ask := func(path, tok string) (codes.Code, string, error) {
		resp, err := client.Check(context.Background(), envoyRequest("GET", path, tok, nil, nil))
		if err != nil {
			return 0, "", err
		}
		return codes.Code(resp.GetStatus().GetCode()), resp.GetDeniedResponse().GetBody(), nil
	}
	waitReload := func() {
		t.Helper()
		select {
		case <-reloaded:
		case <-time.After(20 * time.Second):
			t.Fatal("routes_file change never reloaded")
		}
	}

	var checks, failures atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := ask("/orders/42?x=1", orders)
				checks.Add(1)
				if err != nil || code != codes.OK {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%v %v %s", code, err, body))
				}
			}
		})
	}
	for i := range 4 {
		writeRoutes(t, file, routesV2)
		waitReload()
		if code, body, err := ask("/admin", admin); err != nil || code != codes.OK {
			t.Fatalf("round %d: the new table is not in force: %v %v %s", i, code, err, body)
		}
		writeRoutes(t, file, strings.Replace(routesV2, "prefix: /reports", "prefix: reports", 1)) // invalid
		waitReload()
		if code, _, err := ask("/admin", admin); err != nil || code != codes.OK {
			t.Fatalf("round %d: a bad file replaced the last good table: %v %v", i, code, err)
		}
		st := srv.routes.Status()
		if !strings.Contains(st.LastError, `"reports": match: prefix: "reports" must start with /`) {
			t.Fatalf("round %d: /readyz does not say why the file was refused: %+v", i, st)
		}
		writeRoutes(t, file, routesV1)
		waitReload()
		if code, body, err := ask("/admin", admin); err != nil || code != codes.PermissionDenied || !strings.Contains(body, "no route matched") {
			t.Fatalf("round %d: the route removed by the file still matches: %v %v %s", i, code, err, body)
		}
	}
	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d Checks failed while the table reloaded; first: %v", n, checks.Load(), firstFailure.Load())
	}
	if checks.Load() < 20 {
		t.Fatalf("only %d Checks ran during the reloads", checks.Load())
	}
	t.Logf("%d Checks during 12 reloads, none failed", checks.Load())

	body := httpGet(t, "http://"+srv.AdminAddr()+"/readyz", 200)
	var ready struct{ Details struct{ Routes RouteStatus } }
	if err := json.Unmarshal([]byte(body), &ready); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if r := ready.Details.Routes; r.Source != "routes_file" || r.File != file || r.Unmatched != "deny" || r.Routes != 2 || r.VirtualHosts != 1 || r.LastError != "" {
		t.Fatalf("/readyz routes: %+v", r)
	}
}

// A bad routes file at start fails the start, naming the file; without a table the log and
// /readyz say that route scopes come only from context extensions.
func TestRouteTableAtStart(t *testing.T) {
	k := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k)
	defer is.Close()
	file := filepath.Join(t.TempDir(), "xds.yaml")
	writeRoutes(t, file, strings.Replace(routesV1, "scopes: [orders:read]", "scope: [orders:read]", 1))
	var logs lockedBuffer
	if _, err := meshServer(t, is, "routes_file: "+file, &logs, nil); err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "scope") {
		t.Fatalf("a bad routes file at start: %v", err)
	}

	srv, err := meshServer(t, is, "", &logs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "route scopes come only from context extensions") || !strings.Contains(logs.String(), "unmatched=token_only") {
		t.Fatalf("start log:\n%s", logs.String())
	}
	if st := srv.routes.Status(); st.Source != "context_extensions" || st.Unmatched != "token_only" {
		t.Fatalf("status %+v", st)
	}

	inline := `
routes:
  virtual_hosts:
    - name: api
      domains: ["*"]
      routes:
        - name: orders
          match: {prefix: /orders}
          scopes: [orders:read]
unmatched: token_only
`
	srv, err = meshServer(t, is, inline, &logs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := srv.routes.Status(); st.Source != "routes" || st.Unmatched != "token_only" || st.Routes != 1 {
		t.Fatalf("inline routes: %+v", st)
	}
	conn := dial(t, srv.GRPCAddr())
	waitServing(t, healthpb.NewHealthClient(conn))
	client := authv3.NewAuthorizationClient(conn)
	tok := "Bearer " + testissuer.Sign(k, is.Standard("orders-api", "alice", "other", time.Hour), nil)
	for path, want := range map[string]codes.Code{"/orders/1": codes.PermissionDenied, "/elsewhere": codes.OK} {
		resp, err := client.Check(context.Background(), envoyRequest("GET", path, tok, nil, nil))
		if err != nil || codes.Code(resp.GetStatus().GetCode()) != want {
			t.Errorf("%s: %v %v, want %v", path, resp.GetStatus(), err, want)
		}
	}
}
