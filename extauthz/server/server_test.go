package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/internal/checkreq"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

func repoPolicies(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "policies")
}

func startServer(t testing.TB, is *testissuer.Issuer, extra string) *Server {
	t.Helper()
	return startServerWithPolicy(t, is, repoPolicies(t), false, extra)
}

// startServerWithPolicy starts a server with the policy directory dir (watched or not); an
// extra block starting with listen: replaces the loopback TCP listener. The policy's own tests
// are not run at start (run_tests: false): make test runs them, and extauthz/policy tests that
// a failing one stops a load; here they would cost 1.5 s of CPU per server under -race.
func startServerWithPolicy(t testing.TB, is *testissuer.Issuer, dir string, watch bool, extra ...string) *Server {
	t.Helper()
	more := strings.Join(extra, "\n")
	listen := "listen: \"127.0.0.1:0\"\n"
	if strings.HasPrefix(more, "listen:") {
		listen = "" // the test's own
	}
	yaml := listen + fmt.Sprintf(`
admin: "127.0.0.1:0"
issuers:
  - name: demo
    issuer: %q
    jwks_uri: %q
    audiences: [orders-api]
    require_typ: at+jwt
policy:
  path: %q
  watch: %v
  run_tests: false
decision_log:
  output: "off"
%s`, is.Issuer, is.JWKSURL(), dir, watch, more)
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// envoyRequest shapes a CheckRequest the way Envoy's ext_authz filter sends it.
func envoyRequest(method, path, authz string, ext map[string]string, more map[string]string) *authv3.CheckRequest {
	h := map[string]string{"user-agent": "curl/8", "x-request-id": "r-1", "x-scopegate-subject": "spoofed", "x-scopegate-client-id": "spoofed"}
	if authz != "" {
		h["authorization"] = authz
	}
	for k, v := range more {
		h[k] = v
	}
	return checkreq.Request{ID: "1", Method: method, Path: path, Host: "api.example.com", Protocol: "HTTP/2", Source: "203.0.113.7:51234",
		Headers: h, ContextExtensions: ext}.MustBuild()
}

func headerValue(hs []*corev3.HeaderValueOption, name string) (string, bool) {
	for _, h := range hs {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue(), true
		}
	}
	return "", false
}

func TestEndToEnd(t *testing.T) {
	key := testissuer.NewKey("k1", "RS256")
	is := testissuer.New(key)
	defer is.Close()
	srv := startServer(t, is, "")
	conn := dial(t, srv.GRPCAddr())
	ctx := context.Background()

	// Health turns SERVING once the issuer's keys are in.
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		if err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never SERVING: %v %v", resp, err)
		}
		w := healthWatch(t, hc)
		<-w
	}

	tok := func(scope, client string, edit func(testissuer.Claims)) string {
		c := is.Standard("orders-api", "alice", scope, time.Minute)
		c["client_id"] = client
		if edit != nil {
			edit(c)
		}
		return "Bearer " + testissuer.Sign(key, c, nil)
	}
	read := map[string]string{"route": "orders-read", "scopes": "orders:read"}
	write := map[string]string{"route": "orders-write", "scopes": "orders:write"}
	adminRoute := map[string]string{"route": "admin", "scopes": "admin"}
	shadowWrite := map[string]string{"route": "orders-write", "scopes": "orders:write", "mode": "shadow"}

	tests := []struct {
		name       string
		req        *authv3.CheckRequest
		code       codes.Code
		status     int
		challenge  string // substring of WWW-Authenticate
		bodyError  string
		wantHeader map[string]string
	}{
		{name: "no token", req: envoyRequest("GET", "/orders", "", read, nil), code: codes.Unauthenticated, status: 401,
			challenge: `Bearer realm="scopegate"`, bodyError: "unauthorized"},
		{name: "read allowed", req: envoyRequest("GET", "/orders/1?x=1", tok("orders:read", "orders-cli", nil), read, nil), code: codes.OK,
			wantHeader: map[string]string{"x-scopegate-subject": "alice", "x-scopegate-client-id": "orders-cli", "x-scopegate-scopes": "orders:read", "x-scopegate-issuer": "demo"}},
		{name: "write implies read", req: envoyRequest("GET", "/orders", tok("orders:write", "orders-cli", nil), read, nil), code: codes.OK},
		{name: "write needs orders:write", req: envoyRequest("POST", "/orders", tok("orders:read", "orders-cli", nil), write, nil), code: codes.PermissionDenied, status: 403,
			challenge: `error="insufficient_scope"`, bodyError: "insufficient_scope"},
		{name: "admin scope from the wrong client", req: envoyRequest("GET", "/admin/users", tok("admin", "orders-cli", nil), adminRoute, nil), code: codes.PermissionDenied, status: 403, bodyError: "access_denied"},
		{name: "admin allowed for ops-console", req: envoyRequest("GET", "/admin/users", tok("admin", "ops-console", nil), adminRoute, nil), code: codes.OK},
		{name: "//admin through the orders route", req: envoyRequest("GET", "//admin", tok("orders:read", "orders-cli", nil), read, nil), code: codes.PermissionDenied, status: 403},
		{name: "shadow route lets a denial through", req: envoyRequest("POST", "/orders", tok("orders:read", "orders-cli", nil), shadowWrite, nil), code: codes.OK},
		{name: "expired", req: envoyRequest("GET", "/orders", tok("orders:read", "c", func(c testissuer.Claims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), read, nil),
			code: codes.Unauthenticated, status: 401, challenge: `error="invalid_token"`, bodyError: "invalid_token"},
		{name: "wrong audience", req: envoyRequest("GET", "/orders", tok("orders:read", "c", func(c testissuer.Claims) { c["aud"] = "other" }), read, nil),
			code: codes.Unauthenticated, status: 401, challenge: `error="invalid_token"`},
		{name: "token in query", req: envoyRequest("GET", "/orders?access_token=abc", tok("orders:read", "c", nil), read, nil), code: codes.InvalidArgument, status: 400, bodyError: "invalid_request"},
		{name: "two tokens", req: envoyRequest("GET", "/orders", "Bearer a,Bearer b", read, nil), code: codes.InvalidArgument, status: 400, bodyError: "invalid_request"},
		{name: "oversized token", req: envoyRequest("GET", "/orders", "Bearer "+strings.Repeat("a", 9000), read, nil), code: codes.InvalidArgument, status: 400},
		{name: "garbage token", req: envoyRequest("GET", "/orders", "Bearer not.a.jwt", read, nil), code: codes.Unauthenticated, status: 401},
	}
	client := authv3.NewAuthorizationClient(conn)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.Check(ctx, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if codes.Code(resp.GetStatus().GetCode()) != tt.code {
				t.Fatalf("gRPC status %v, want %v (%v)", codes.Code(resp.GetStatus().GetCode()), tt.code, resp)
			}
			if tt.code == codes.OK {
				ok := resp.GetOkResponse()
				if ok == nil {
					t.Fatalf("no OkResponse: %v", resp)
				}
				for name, want := range tt.wantHeader {
					if got, _ := headerValue(ok.GetHeaders(), name); got != want {
						t.Errorf("%s = %q, want %q", name, got, want)
					}
				}
				// Spoofed identity headers are overwritten (or removed when we have no value).
				for _, h := range []string{"x-scopegate-subject", "x-scopegate-client-id"} {
					v, set := headerValue(ok.GetHeaders(), h)
					removed := false
					for _, r := range ok.GetHeadersToRemove() {
						removed = removed || r == h
					}
					if !(set && v != "spoofed") && !removed {
						t.Errorf("%s: client-supplied value survives", h)
					}
				}
				return
			}
			d := resp.GetDeniedResponse()
			if d == nil || int(d.GetStatus().GetCode()) != tt.status {
				t.Fatalf("denied response %v, want HTTP %d", d, tt.status)
			}
			if tt.challenge != "" {
				if got, _ := headerValue(d.GetHeaders(), "www-authenticate"); !strings.Contains(got, tt.challenge) {
					t.Errorf("WWW-Authenticate %q lacks %q", got, tt.challenge)
				}
			}
			if tt.bodyError != "" && !strings.Contains(d.GetBody(), `"error":"`+tt.bodyError+`"`) {
				t.Errorf("body %s lacks error %s", d.GetBody(), tt.bodyError)
			}
			if auth := tt.req.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"]; len(auth) > 10 && strings.Contains(d.GetBody(), auth[7:]) {
				t.Error("the body echoes the token")
			}
		})
	}

	// insufficient_scope names the scopes the route needs.
	resp, _ := client.Check(ctx, envoyRequest("DELETE", "/orders/1", tok("orders:read", "c", nil), write, nil))
	if got, _ := headerValue(resp.GetDeniedResponse().GetHeaders(), "www-authenticate"); !strings.Contains(got, `scope="orders:write"`) {
		t.Errorf("challenge %q does not name the required scope", got)
	}

	// Admin endpoints.
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": `"ready"`, "/metrics": `scopegate_checks_total{reason="insufficient_scope",result="deny"}`} {
		body := httpGet(t, "http://"+srv.AdminAddr()+path, 200)
		if !strings.Contains(body, want) {
			t.Errorf("%s lacks %q:\n%.2000s", path, want, body)
		}
	}
	if body := httpGet(t, "http://"+srv.AdminAddr()+"/metrics", 200); !strings.Contains(body, `scopegate_shadow_denials_total{reason="insufficient_scope"} 1`) {
		t.Errorf("shadow denial not counted")
	}
}

func healthWatch(t *testing.T, hc healthpb.HealthClient) <-chan struct{} {
	ch := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	go func() {
		defer cancel()
		defer close(ch)
		w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		if err != nil {
			return
		}
		for {
			r, err := w.Recv()
			if err != nil || r.Status == healthpb.HealthCheckResponse_SERVING {
				return
			}
		}
	}()
	return ch
}

func httpGet(t *testing.T, url string, want int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s = %d, want %d: %s", url, resp.StatusCode, want, b)
	}
	return string(b)
}

func TestIdPDownAtStart(t *testing.T) {
	key := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(key)
	defer is.Close()
	is.SetMode(testissuer.Down)
	srv := startServer(t, is, "")
	client := authv3.NewAuthorizationClient(dial(t, srv.GRPCAddr()))
	tok := "Bearer " + testissuer.Sign(key, is.Standard("orders-api", "a", "orders:read", time.Minute), nil)
	resp, err := client.Check(context.Background(), envoyRequest("GET", "/orders", tok, map[string]string{"route": "orders-read", "scopes": "orders:read"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	d := resp.GetDeniedResponse()
	if d.GetStatus().GetCode() != 503 {
		t.Fatalf("IdP down at start: %v, want 503", resp)
	}
	if ra, _ := headerValue(d.GetHeaders(), "retry-after"); ra == "" {
		t.Error("no Retry-After")
	}
	// /readyz says which issuer has no keys and why (the last error), as troubleshooting.md
	// shows it.
	<-srv.sources[0].FirstAttempt()
	var ready struct {
		Reason  string `json:"reason"`
		Details struct {
			Issuers map[string]struct {
				Source    string     `json:"source"`
				KIDs      []string   `json:"kids"`
				FetchedAt *time.Time `json:"fetched_at"`
				LastError string     `json:"last_error"`
			} `json:"issuers"`
		} `json:"details"`
	}
	if err := json.Unmarshal([]byte(httpGet(t, "http://"+srv.AdminAddr()+"/readyz", 503)), &ready); err != nil {
		t.Fatal(err)
	}
	if want := "no keys yet for issuer(s) [demo] (last error: demo: jwks " + is.JWKSURL() + ": HTTP status 503)"; ready.Reason != want {
		t.Errorf("/readyz reason %q, want %q", ready.Reason, want)
	}
	if st := ready.Details.Issuers["demo"]; st.Source != is.JWKSURL() || len(st.KIDs) != 0 || st.FetchedAt != nil || !strings.Contains(st.LastError, "503") {
		t.Errorf("/readyz issuer demo: %+v", st)
	}
	hc := healthpb.NewHealthClient(dial(t, srv.GRPCAddr()))
	if hresp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil || hresp.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health = %v, %v; want NOT_SERVING", hresp, err)
	}
	is.SetMode(testissuer.Serving)
	waitServing(t, hc)
	if err := json.Unmarshal([]byte(httpGet(t, "http://"+srv.AdminAddr()+"/readyz", 200)), &ready); err != nil {
		t.Fatal(err)
	}
	if st := ready.Details.Issuers["demo"]; len(st.KIDs) != 1 || st.KIDs[0] != "k1" || st.FetchedAt == nil || st.LastError != "" {
		t.Errorf("/readyz issuer demo once keys arrived: %+v; want kid k1, fetched_at and no error", st)
	}
}

func TestBadPolicyFailsStart(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package scopegate.authz\ndecision := {"), 0o600); err != nil {
		t.Fatal(err)
	}
	is := testissuer.New(testissuer.NewKey("k", "ES256"))
	defer is.Close()
	cfg, err := config.Parse([]byte(fmt.Sprintf("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nissuers: [{name: d, issuer: %q, jwks_uri: %q, audiences: [a]}]\npolicy: {path: %q}\n", is.Issuer, is.JWKSURL(), dir)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "p.rego") {
		t.Fatalf("New with a broken policy = %v, want an error naming p.rego", err)
	}
}

// TestPolicyTestsGateStart: the policy's own tests run before it goes live unless the config
// says run_tests: false (the helpers above say so; this keeps the wiring honest).
func TestPolicyTestsGateStart(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"p.rego":      "package scopegate.authz\n\ndecision := {\"allow\": false, \"status\": 403}\n",
		"p_test.rego": "package scopegate.authz_test\n\ntest_always_fails if false\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	is := testissuer.New(testissuer.NewKey("k", "ES256"))
	defer is.Close()
	for _, tt := range []struct {
		setting string
		wantErr string
	}{
		{"", "test_always_fails"},
		{", run_tests: true", "test_always_fails"},
		{", run_tests: false", ""},
	} {
		t.Run("policy"+tt.setting, func(t *testing.T) {
			cfg, err := config.Parse([]byte(fmt.Sprintf("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nissuers: [{name: d, issuer: %q, jwks_uri: %q, audiences: [a]}]\npolicy: {path: %q%s}\n",
				is.Issuer, is.JWKSURL(), dir, tt.setting)))
			if err != nil {
				t.Fatal(err)
			}
			srv, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New = %v, want a server", err)
				}
				_ = srv.Shutdown(context.Background())
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New = %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
}

// waitServing waits for the Authorization service's health to turn SERVING.
func waitServing(t *testing.T, hc healthpb.HealthClient) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		if err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never SERVING: %v %v", resp, err)
		}
		<-healthWatch(t, hc)
	}
}

// SIGTERM's Shutdown tells health watchers first, then lets a Check already in flight finish
// with its real answer (here one waiting on a key refresh at the IdP) before it returns.
func TestShutdownDrainsInFlightChecks(t *testing.T) {
	k1 := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k1)
	defer is.Close()
	srv := startServer(t, is, "")
	conn := dial(t, srv.GRPCAddr())
	hc := healthpb.NewHealthClient(conn)
	waitServing(t, hc)

	// A token signed with a key rotated in since start: its Check waits on a key refresh,
	// which the IdP holds.
	k2 := testissuer.NewKey("k2", "ES256")
	is.SetKeys(k1, k2)
	hold := is.HoldNext()
	type result struct {
		resp *authv3.CheckResponse
		err  error
	}
	checked := make(chan result, 1)
	go func() {
		tok := "Bearer " + testissuer.Sign(k2, is.Standard("orders-api", "a", "orders:read", time.Minute), nil)
		resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(),
			envoyRequest("GET", "/orders", tok, map[string]string{"route": "orders-read", "scopes": "orders:read"}, nil))
		checked <- result{resp, err}
	}()
	select {
	case <-hold.Arrived:
	case r := <-checked:
		t.Fatalf("the Check did not wait for the key refresh: %v %v", r.resp, r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("no key refresh reached the IdP")
	}

	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	watch, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before shutdown: %v %v", r, err)
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health at shutdown: %v %v; want NOT_SERVING", r, err)
	}
	// The watch stays open: Shutdown ends it (UNAVAILABLE) rather than waiting for it.

	// Shutdown must still be waiting for the held Check.
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a Check in flight", err)
	case r := <-checked:
		t.Fatalf("the in-flight Check ended before its key refresh: %v %v", r.resp, r.err)
	default:
	}
	hold.Release()
	r := <-checked
	if r.err != nil || codes.Code(r.resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("in-flight Check: %v %v; want allowed", r.resp, r.err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("the health watch ended with %v, want Unavailable", err)
	}
	// Stopped: a new connection is refused.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(dial(t, srv.GRPCAddr())).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("health answered after shutdown")
	}
}

// TestGRPCReflection: reflection is served only when grpc_reflection is on.
func TestGRPCReflection(t *testing.T) {
	is := testissuer.New(testissuer.NewKey("k1", "RS256"))
	defer is.Close()
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint("grpc_reflection=", on), func(t *testing.T) {
			srv := startServer(t, is, fmt.Sprintf("grpc_reflection: %v\n", on))
			conn := dial(t, srv.GRPCAddr())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// Send reports io.EOF when the server has already ended the stream (reflection
			// off: Unimplemented); Recv then returns the stream's status.
			if err := stream.Send(&reflectionpb.ServerReflectionRequest{
				MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"}}); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if !on {
				if status.Code(err) != codes.Unimplemented {
					t.Fatalf("reflection off: got %v, %v; want Unimplemented", resp, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range resp.GetListServicesResponse().GetService() {
				names = append(names, s.GetName())
			}
			if !slices.Contains(names, authv3.Authorization_ServiceDesc.ServiceName) || !slices.Contains(names, "grpc.health.v1.Health") {
				t.Fatalf("services listed: %v", names)
			}
		})
	}
}
