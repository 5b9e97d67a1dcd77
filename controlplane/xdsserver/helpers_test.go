package xdsserver

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/controlplane/translate"
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

// sotwRaw is a bare state-of-the-world ADS stream: the test writes every request.
type sotwRaw struct {
	t *testing.T
	s grpc.BidiStreamingClient[discovery.DiscoveryRequest, discovery.DiscoveryResponse]
}

func newSotW(t *testing.T, conn *grpc.ClientConn) *sotwRaw {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	s, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &sotwRaw{t: t, s: s}
}

func (c *sotwRaw) send(req *discovery.DiscoveryRequest) {
	c.t.Helper()
	if err := c.s.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *sotwRaw) recv() *discovery.DiscoveryResponse {
	c.t.Helper()
	resp, err := c.s.Recv()
	if err != nil {
		c.t.Fatal(err)
	}
	return resp
}

// ack answers resp as Envoy does when it accepts it.
func (c *sotwRaw) ack(resp *discovery.DiscoveryResponse, names ...string) {
	c.t.Helper()
	c.send(&discovery.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(), ResourceNames: names})
}

// deltaRaw is a bare delta ADS stream.
type deltaRaw struct {
	t *testing.T
	s grpc.BidiStreamingClient[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]
}

func newDelta(t *testing.T, conn *grpc.ClientConn) *deltaRaw {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	s, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &deltaRaw{t: t, s: s}
}

func (c *deltaRaw) send(req *discovery.DeltaDiscoveryRequest) {
	c.t.Helper()
	if err := c.s.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *deltaRaw) recv() *discovery.DeltaDiscoveryResponse {
	c.t.Helper()
	resp, err := c.s.Recv()
	if err != nil {
		c.t.Fatal(err)
	}
	return resp
}

func (c *deltaRaw) ack(resp *discovery.DeltaDiscoveryResponse) {
	c.t.Helper()
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
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
		out = append(out, nameOfMessage(m))
	}
	return out
}

func nameOfMessage(m proto.Message) string {
	switch r := m.(type) {
	case interface{ GetName() string }:
		return r.GetName()
	case interface{ GetClusterName() string }:
		return r.GetClusterName()
	}
	return ""
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
