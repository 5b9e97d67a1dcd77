package xdsserver

import (
	"context"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
)

// TestServerWithGoControlPlaneClient: go-control-plane's own SotW ADS client receives the
// fleet's clusters, and a NACK from it is recorded.
func TestServerWithGoControlPlaneClient(t *testing.T) {
	cfg := withScope("s")
	s, conn := serve(t, cfg)
	cl := clustersClient(t, conn, "gcp-1")
	if n := fetchClusters(t, cl); n != 3 {
		t.Fatalf("clusters = %d, want 3 (two upstreams and authz)", n)
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
	cl := clustersClient(t, conn, "gcp-2")
	if n := fetchClusters(t, cl); n != 3 {
		t.Fatalf("clusters = %d, want 3", n)
	}
	if err := cl.Ack(); err != nil {
		t.Fatal(err)
	}
	more := strings.Replace(withScope("v1"), "upstreams:\n", "upstreams:\n  - {name: c, endpoints: [\"127.0.0.1:8083\"]}\n", 1)
	more = strings.Replace(more, "            routes:\n", "            routes:\n              - {name: c, match: {prefix: /c}, upstream: c, scopes: [s]}\n", 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := s.Apply(ctx, build(t, more)); err != nil {
		t.Fatal(err)
	}
	if n := fetchClusters(t, cl); n != 4 {
		t.Fatalf("clusters after the change = %d, want 4", n)
	}
}

// clustersClient is go-control-plane's own SotW ADS client, subscribed to clusters as node
// id of fleet edge.
func clustersClient(t *testing.T, conn grpc.ClientConnInterface, id string) sotw.ADSClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	cl := sotw.NewADSClient(ctx, edgeNode(id), resource.ClusterType)
	if err := cl.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	return cl
}

// fetchClusters waits for the next clusters response and counts its resources.
func fetchClusters(t *testing.T, cl sotw.ADSClient) int {
	t.Helper()
	resp, err := cl.Fetch()
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Resources)
}
