package xdsserver

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/controlplane/translate"
	"github.com/scopegate/scopegate/internal/testing/envoysim"
)

// waitTimeout bounds every wait on the server; generous for a loaded -race run.
const waitTimeout = 20 * time.Second

// twoUpstreams is a fleet with three EDS endpoint sets (a, b and the authz cluster's).
const twoUpstreams = `
authz: {address: "127.0.0.1:9191"}
fleets:
  - name: edge
    listeners:
      - name: public
        address: "0.0.0.0"
        port: 10000
        virtual_hosts:
          - name: api
            domains: ["*"]
            routes:
              - {name: a, match: {prefix: /a}, upstream: a, scopes: [SCOPE]}
              - {name: b, match: {prefix: /b}, upstream: b, scopes: [s]}
upstreams:
  - {name: a, endpoints: ["127.0.0.1:8081"]}
  - {name: b, endpoints: ["127.0.0.1:8082"]}
`

func build(t *testing.T, cfg string) map[string]*translate.Fleet {
	t.Helper()
	c, err := config.Parse("cfg.yaml", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	fleets, err := translate.Build(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fleets
}

func withScope(scope string) string { return strings.Replace(twoUpstreams, "SCOPE", scope, 1) }

// serve starts a Server with cfg applied, and a client connection to it.
func serve(t *testing.T, cfg string) (*Server, *grpc.ClientConn) {
	t.Helper()
	s := New(Options{})
	if err := s.Apply(context.Background(), build(t, cfg)); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, conn
}

func edgeNode(id string) *core.Node { return &core.Node{Id: id, Cluster: "edge"} }

// raw is a bare ADS stream: the test writes every request.
type raw[Req, Resp any] struct {
	t *testing.T
	s grpc.BidiStreamingClient[Req, Resp]
}

type (
	sotwRaw  = raw[discovery.DiscoveryRequest, discovery.DiscoveryResponse]
	deltaRaw = raw[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]
)

func open[Req, Resp any](t *testing.T, start func(context.Context, ...grpc.CallOption) (grpc.BidiStreamingClient[Req, Resp], error)) *raw[Req, Resp] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	s, err := start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &raw[Req, Resp]{t: t, s: s}
}

func newSotW(t *testing.T, conn *grpc.ClientConn) *sotwRaw {
	t.Helper()
	return open(t, discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources)
}

func newDelta(t *testing.T, conn *grpc.ClientConn) *deltaRaw {
	t.Helper()
	return open(t, discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources)
}

func (c *raw[Req, Resp]) send(req *Req) {
	c.t.Helper()
	if err := c.s.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *raw[Req, Resp]) recv() *Resp {
	c.t.Helper()
	resp, err := c.s.Recv()
	if err != nil {
		c.t.Fatal(err)
	}
	return resp
}

// ackSotW answers resp as Envoy does when it accepts it.
func ackSotW(c *sotwRaw, resp *discovery.DiscoveryResponse, names ...string) {
	c.t.Helper()
	c.send(&discovery.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(), ResourceNames: names})
}

func ackDelta(c *deltaRaw, resp *discovery.DeltaDiscoveryResponse) {
	c.t.Helper()
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
}

// dial connects one simulated Envoy per protocol in turn (SotW first).
func dial(t *testing.T, conn *grpc.ClientConn, n int) []*envoysim.Client {
	t.Helper()
	var out []*envoysim.Client
	for i := range n {
		d := envoysim.SotW
		if i%2 == 1 {
			d = envoysim.Delta
		}
		c, err := d(context.Background(), conn, edgeNode(fmt.Sprintf("n%d", i)), envoysim.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		out = append(out, c)
	}
	return out
}

// deltaNames lists a delta response's resource names, in order.
func deltaNames(resp *discovery.DeltaDiscoveryResponse) []string {
	var out []string
	for _, r := range resp.GetResources() {
		out = append(out, r.GetName())
	}
	return out
}

// sotwNames lists a SotW response's resource names (each unpacked), in order.
func sotwNames(t *testing.T, resp *discovery.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range resp.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, envoysim.NameOf(m))
	}
	return out
}

// eventually polls cond until it holds (state the server keeps has no signal of its own).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
