package check_test

import (
	"context"
	"net"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// blackHole accepts TCP connections and never answers: an IdP that hangs.
func blackHole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never read or written
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + l.Addr().String() + "/introspect"
}

// With a black-holed introspection endpoint and Envoy's 250 ms ext_authz timeout, the Check is
// answered (503 with Retry-After) before the deadline over real gRPC, not timed out.
func TestIntrospectionAnswersBeforeEnvoysDeadline(t *testing.T) {
	k := testissuer.NewKey("k1", "ES256")
	r := newRigIntrospecting(t, []*testissuer.Key{k}, "token-only", 1000, blackHole(t))
	svc := check.New(check.Options{Verifier: r.verifier, Headers: identityHeaders, MaxTokenBytes: 4096})

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, svc)
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)

	for i := range 2 { // the second Check joins the call still hanging
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		start := time.Now()
		resp, err := client.Check(ctx, request("opaque.never.answered.token.x"))
		took := time.Since(start)
		cancel()
		if err != nil {
			t.Fatalf("Check %d: %v after %s; want an answer before the 250ms deadline", i, err, took)
		}
		d := resp.GetDeniedResponse()
		if codes.Code(resp.GetStatus().GetCode()) != codes.Unavailable || d.GetStatus().GetCode() != 503 {
			t.Fatalf("Check %d: %v; want 503 UNAVAILABLE", i, resp)
		}
		var retry bool
		for _, h := range d.GetHeaders() {
			retry = retry || (h.GetHeader().GetKey() == "retry-after" && h.GetHeader().GetValue() != "")
		}
		if !retry || took >= 250*time.Millisecond {
			t.Fatalf("Check %d: Retry-After %v, answered after %s", i, retry, took)
		}
	}
}
