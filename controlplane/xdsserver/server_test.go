package xdsserver

import (
	"context"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// TestServerWithGoControlPlaneClient: go-control-plane's own SotW ADS client receives the
// fleet's clusters, and a NACK from it is recorded.
func TestServerWithGoControlPlaneClient(t *testing.T) {
	cfg := withScope("s")
	s, conn := serve(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cl := sotw.NewADSClient(ctx, edgeNode("gcp-1"), resource.ClusterType)
	if err := cl.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := cl.Fetch()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Resources) != 3 {
		t.Fatalf("clusters = %d, want 3 (two upstreams and authz)", len(resp.Resources))
	}
	if err := cl.Nack("cluster rejected"); err != nil {
		t.Fatal(err)
	}
	want := build(t, cfg)["edge"].Versions[resource.ClusterType]
	var last *NACK
	eventually(t, "the NACK recorded", func() bool {
		nodes := s.Nodes()
		if len(nodes) == 1 && nodes[0].LastNACK != nil {
			last = nodes[0].LastNACK
		}
		return last != nil
	})
	if last.Type != "clusters" || last.Version != want || last.Message != "cluster rejected" {
		t.Fatalf("last NACK = %+v", last)
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
