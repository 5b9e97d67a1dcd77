package xdsserver

import (
	"context"
	"log/slog"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func newTestTracker() *tracker {
	return newTracker(slog.New(slog.DiscardHandler), newMetrics(nil), func(f string) bool { return f == "edge" })
}

// TestTrackerSotW walks one SotW stream through subscribe, response, stale request, NACK and
// ACK, checking what is recorded and what the cache will see.
func TestTrackerSotW(t *testing.T) {
	tr := newTestTracker()
	tr.open(context.Background(), streamKey{id: 1})
	node := &core.Node{Id: "n1", Cluster: "edge"}
	rt := resource.RouteType
	steps := []struct {
		name        string
		req         *discovery.DiscoveryRequest
		resp        *discovery.DiscoveryResponse
		wantAcked   string
		wantNACK    string // version of the last NACK
		wantVersion string // the request's version_info after the callback
	}{
		{name: "subscribe", req: &discovery.DiscoveryRequest{Node: node, TypeUrl: rt}},
		{name: "response v1", resp: &discovery.DiscoveryResponse{TypeUrl: rt, VersionInfo: "v1", Nonce: "1"}},
		{name: "ACK v1", req: &discovery.DiscoveryRequest{TypeUrl: rt, VersionInfo: "v1", ResponseNonce: "1"}, wantAcked: "v1", wantVersion: "v1"},
		{name: "response v2", resp: &discovery.DiscoveryResponse{TypeUrl: rt, VersionInfo: "v2", Nonce: "2"}, wantAcked: "v1"},
		{name: "stale nonce ignored", req: &discovery.DiscoveryRequest{TypeUrl: rt, VersionInfo: "v0", ResponseNonce: "1", ErrorDetail: &rpcstatus.Status{Message: "old"}},
			wantAcked: "v1", wantVersion: "v0"},
		{name: "NACK v2", req: &discovery.DiscoveryRequest{TypeUrl: rt, VersionInfo: "v1", ResponseNonce: "2", ErrorDetail: &rpcstatus.Status{Message: "bad"}},
			wantAcked: "v1", wantNACK: "v2", wantVersion: "v2"},
		{name: "response v3", resp: &discovery.DiscoveryResponse{TypeUrl: rt, VersionInfo: "v3", Nonce: "3"}, wantAcked: "v1", wantNACK: "v2"},
		{name: "ACK v3", req: &discovery.DiscoveryRequest{TypeUrl: rt, VersionInfo: "v3", ResponseNonce: "3"}, wantAcked: "v3", wantNACK: "v2", wantVersion: "v3"},
	}
	for _, s := range steps {
		if s.req != nil {
			if err := tr.request(1, s.req); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if s.req.GetVersionInfo() != s.wantVersion {
				t.Errorf("%s: request version_info = %q, want %q", s.name, s.req.GetVersionInfo(), s.wantVersion)
			}
		}
		if s.resp != nil {
			tr.response(1, s.resp)
		}
		nodes := tr.nodes()
		if len(nodes) != 1 {
			t.Fatalf("%s: nodes = %v", s.name, nodes)
		}
		n := nodes[0]
		if got := n.Types["routes"].Acked; got != s.wantAcked {
			t.Errorf("%s: acked = %q, want %q", s.name, got, s.wantAcked)
		}
		got := ""
		if n.LastNACK != nil {
			got = n.LastNACK.Version
		}
		if got != s.wantNACK {
			t.Errorf("%s: last NACK version = %q, want %q", s.name, got, s.wantNACK)
		}
	}
}

// TestTrackerDelta: delta ACKs carry no version (the nonce says which response), later
// requests carry no node, and delta stream IDs do not collide with SotW ones.
func TestTrackerDelta(t *testing.T) {
	tr := newTestTracker()
	tr.open(context.Background(), streamKey{id: 1})              // SotW stream 1
	tr.open(context.Background(), streamKey{delta: true, id: 1}) // delta stream 1
	if err := tr.request(1, &discovery.DiscoveryRequest{Node: &core.Node{Id: "sotw", Cluster: "edge"}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	ct := resource.ClusterType
	if err := tr.deltaRequest(1, &discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: "delta", Cluster: "edge"}, TypeUrl: ct}); err != nil {
		t.Fatal(err)
	}
	tr.deltaResponse(1, &discovery.DeltaDiscoveryResponse{TypeUrl: ct, SystemVersionInfo: "c1", Nonce: "1"})
	tr.deltaResponse(1, &discovery.DeltaDiscoveryResponse{TypeUrl: ct, SystemVersionInfo: "c2", Nonce: "2"})
	if err := tr.deltaRequest(1, &discovery.DeltaDiscoveryRequest{TypeUrl: ct, ResponseNonce: "1"}); err != nil {
		t.Fatal(err)
	}
	if err := tr.deltaRequest(1, &discovery.DeltaDiscoveryRequest{TypeUrl: ct, ResponseNonce: "2", ErrorDetail: &rpcstatus.Status{Message: "no"}}); err != nil {
		t.Fatal(err)
	}
	nodes := tr.nodes()
	if len(nodes) != 2 {
		t.Fatalf("nodes = %+v, want the SotW and the delta stream both", nodes)
	}
	d := nodes[0]
	if d.Protocol != "delta" {
		d = nodes[1]
	}
	if d.Node != "delta" || d.Types["clusters"].Acked != "c1" || d.Types["clusters"].Sent != "c2" || d.LastNACK == nil || d.LastNACK.Version != "c2" {
		t.Errorf("delta stream = %+v (last NACK %+v)", d, d.LastNACK)
	}
}

func TestTrackerRefuses(t *testing.T) {
	tests := []struct {
		name string
		node *core.Node
		code codes.Code
	}{
		{"no node on first request", nil, codes.InvalidArgument},
		{"unknown fleet", &core.Node{Id: "x", Cluster: "nope"}, codes.FailedPrecondition},
		{"no fleet", &core.Node{Id: "x"}, codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTestTracker()
			tr.open(context.Background(), streamKey{id: 7})
			err := tr.request(7, &discovery.DiscoveryRequest{Node: tt.node, TypeUrl: resource.ClusterType})
			if status.Code(err) != tt.code {
				t.Fatalf("err = %v, want %v", err, tt.code)
			}
			if len(tr.nodes()) != 0 {
				t.Error("refused stream listed")
			}
		})
	}
}
