package xdsserver

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/controlplane/translate"
)

const cfg = `
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
              - {name: r, match: {prefix: /}, upstream: u, scopes: [s]}
upstreams:
  - {name: u, endpoints: ["127.0.0.1:8081"]}
`

// TestServerWithGoControlPlaneClient: go-control-plane's own SotW ADS client receives the
// fleet's clusters, and a NACK from it is recorded.
func TestServerWithGoControlPlaneClient(t *testing.T) {
	c, err := config.Parse("cfg.yaml", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	fleets, err := translate.Build(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{})
	if err := s.Apply(context.Background(), fleets); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := sotw.NewADSClient(ctx, &core.Node{Id: "gcp-1", Cluster: "edge"}, resource.ClusterType)
	if err := cl.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := cl.Fetch()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Resources) != 2 {
		t.Fatalf("clusters = %d, want 2 (upstream and authz)", len(resp.Resources))
	}
	if err := cl.Nack("cluster rejected"); err != nil {
		t.Fatal(err)
	}
	want := fleets["edge"].Versions[resource.ClusterType]
	deadline := time.Now().Add(20 * time.Second)
	for {
		nodes := s.Nodes()
		if len(nodes) == 1 && nodes[0].LastNACK != nil {
			if n := nodes[0].LastNACK; n.Type != "clusters" || n.Version != want || n.Message != "cluster rejected" {
				t.Fatalf("last NACK = %+v", n)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("NACK not recorded: %+v", nodes)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGoControlPlaneClientFollowsChanges: go-control-plane's own ADS client, ACKing each
// response, receives the fleet's clusters and then a change (an upstream added).
func TestGoControlPlaneClientFollowsChanges(t *testing.T) {
	s, conn := serve(t, withScope("v1"))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cl := sotw.NewADSClient(ctx, edgeNode("gcp-2"), resource.ClusterType)
	if err := cl.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := cl.Fetch()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Resources) != 3 {
		t.Fatalf("clusters = %d, want 3", len(resp.Resources))
	}
	if err := cl.Ack(); err != nil {
		t.Fatal(err)
	}
	more := strings.Replace(withScope("v1"), "upstreams:\n", "upstreams:\n  - {name: c, endpoints: [\"127.0.0.1:8083\"]}\n", 1)
	more = strings.Replace(more, "            routes:\n", "            routes:\n              - {name: c, match: {prefix: /c}, upstream: c, scopes: [s]}\n", 1)
	if err := s.Apply(ctx, build(t, more)); err != nil {
		t.Fatal(err)
	}
	resp, err = cl.Fetch()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Resources) != 4 {
		t.Fatalf("clusters after the change = %d, want 4", len(resp.Resources))
	}
}
