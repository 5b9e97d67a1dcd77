package server

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// envoyTimeout is the ext_authz timeout our control plane gives Envoy.
const envoyTimeout = 250 * time.Millisecond

// checkInTime sends a Check with Envoy's deadline and requires an answer (not a gRPC
// DeadlineExceeded) before it.
func checkInTime(t *testing.T, client authv3.AuthorizationClient, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), envoyTimeout)
	defer cancel()
	start := time.Now()
	resp, err := client.Check(ctx, req)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Check after %s: %v; want an answer within Envoy's %s timeout", took, err, envoyTimeout)
	}
	if took >= envoyTimeout {
		t.Fatalf("Check answered after %s, past Envoy's %s timeout", took, envoyTimeout)
	}
	return resp
}

func wantDenied(t *testing.T, resp *authv3.CheckResponse, status int, retryAfter bool) {
	t.Helper()
	d := resp.GetDeniedResponse()
	if d == nil || int(d.GetStatus().GetCode()) != status {
		t.Fatalf("response %v, want HTTP %d", resp, status)
	}
	if ra, _ := headerValue(d.GetHeaders(), "retry-after"); (ra != "") != retryAfter {
		t.Errorf("Retry-After = %q, want present: %v", ra, retryAfter)
	}
}

// With the IdP accepting connections but never answering, a token whose kid is not in the
// key set must be answered before Envoy's timeout, however many made-up kids arrive.
func TestUnknownKIDAnsweredBeforeDeadline(t *testing.T) {
	k1 := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k1)
	defer is.Close()
	srv := startServer(t, is, "")
	conn := dial(t, srv.GRPCAddr())
	waitServing(t, healthpb.NewHealthClient(conn))
	is.SetMode(testissuer.BlackHole)

	client := authv3.NewAuthorizationClient(conn)
	route := map[string]string{"route": "orders-read", "scopes": "orders:read"}
	for i := range 3 {
		forged := testissuer.NewKey(fmt.Sprintf("forged-%d", i), "ES256")
		tok := "Bearer " + testissuer.Sign(forged, is.Standard("orders-api", "a", "orders:read", time.Minute), nil)
		resp := checkInTime(t, client, envoyRequest("GET", "/orders", tok, route, nil))
		// The first starts a refresh the IdP never answers: 503, the kid may yet exist. The
		// limiter refuses the others a refresh of their own: 401, unknown kid.
		switch code := resp.GetDeniedResponse().GetStatus().GetCode(); {
		case i == 0 || code == 503:
			wantDenied(t, resp, 503, true)
		default:
			wantDenied(t, resp, 401, false)
		}
	}
	// The key that was there all along still verifies at once.
	tok := "Bearer " + testissuer.Sign(k1, is.Standard("orders-api", "a", "orders:read", time.Minute), nil)
	if resp := checkInTime(t, client, envoyRequest("GET", "/orders", tok, route, nil)); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("known key during the outage: %v", resp)
	}
}

// Discovery (and the first key fetch) against a black-holed IdP never hold a Check: it is
// answered 503 with Retry-After in time.
func TestBlackHoledIdPAtStart(t *testing.T) {
	k1 := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k1)
	defer is.Close()
	is.SetMode(testissuer.BlackHole)
	for _, source := range []string{"discovery: true", fmt.Sprintf("jwks_uri: %q", is.JWKSURL())} {
		t.Run(source, func(t *testing.T) {
			cfg, err := config.Parse([]byte(fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: "127.0.0.1:0"
issuers: [{name: demo, issuer: %q, %s, audiences: [orders-api]}]
decision_log: {output: "off"}
`, is.Issuer, source)))
			if err != nil {
				t.Fatal(err)
			}
			srv, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			srv.Start()
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
			}()
			client := authv3.NewAuthorizationClient(dial(t, srv.GRPCAddr()))
			tok := "Bearer " + testissuer.Sign(k1, is.Standard("orders-api", "a", "orders:read", time.Minute), nil)
			resp := checkInTime(t, client, envoyRequest("GET", "/orders", tok, map[string]string{"route": "orders-read", "scopes": "orders:read"}, nil))
			wantDenied(t, resp, 503, true)
		})
	}
}
