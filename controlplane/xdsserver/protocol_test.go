package xdsserver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var endpointNames = []string{"a", "b", "scopegate_authz"}

// TestSotWRules walks a state-of-the-world stream through the rules Envoy and Apply's
// warm-up rely on: a superseded nonce is ignored, an ACK is not answered, a subscription
// that names only some endpoint sets waits until it names them all, and a client that
// already holds a version gets it again on a new stream.
func TestSotWRules(t *testing.T) {
	s, conn := serve(t, withScope("v1"))
	c := newSotW(t, conn)
	c.send(&discovery.DiscoveryRequest{Node: edgeNode("n1"), TypeUrl: resource.ClusterType})
	cds := c.recv()
	if cds.GetTypeUrl() != resource.ClusterType || len(cds.GetResources()) != 3 {
		t.Fatalf("first response %s with %d resources", cds.GetTypeUrl(), len(cds.GetResources()))
	}
	// A request with a nonce that is not the last response's is superseded: ignored. The
	// ACK is not answered either; the next response is the listeners'.
	c.send(&discovery.DiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: "no-such-nonce"})
	ackSotW(c, cds)
	// Endpoints named only in part: not answered until every set is named.
	c.send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: []string{"a"}})
	c.send(&discovery.DiscoveryRequest{TypeUrl: resource.ListenerType})
	if r := c.recv(); r.GetTypeUrl() != resource.ListenerType {
		t.Fatalf("got %s, want listeners: a superseded request, an ACK or a partial endpoints request was answered", r.GetTypeUrl())
	} else {
		ackSotW(c, r)
	}
	c.send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: endpointNames})
	eds := c.recv()
	if got := sotwNames(t, eds); eds.GetTypeUrl() != resource.EndpointType || !slices.Equal(got, endpointNames) {
		t.Fatalf("endpoints response %s %v, want %v", eds.GetTypeUrl(), got, endpointNames)
	}
	ackSotW(c, eds, endpointNames...)

	// A change reaches the stream; a second stream presenting the version it holds (a
	// reconnect) still gets the resources once.
	next := build(t, withScope("v2"))
	c.send(&discovery.DiscoveryRequest{TypeUrl: resource.RouteType, ResourceNames: []string{"public"}})
	rds := c.recv()
	ackSotW(c, rds, "public")
	if err := s.Apply(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	rds2 := c.recv()
	if rds2.GetTypeUrl() != resource.RouteType || rds2.GetVersionInfo() != next["edge"].Versions[resource.RouteType] || rds2.GetVersionInfo() == rds.GetVersionInfo() {
		t.Fatalf("after the change: %s version %s", rds2.GetTypeUrl(), rds2.GetVersionInfo())
	}
	again := newSotW(t, conn)
	again.send(&discovery.DiscoveryRequest{Node: edgeNode("n1"), TypeUrl: resource.RouteType, ResourceNames: []string{"public"}, VersionInfo: rds2.GetVersionInfo()})
	if r := again.recv(); r.GetVersionInfo() != rds2.GetVersionInfo() || len(r.GetResources()) != 1 {
		t.Errorf("reconnect at the version held: %s with %d resources", r.GetVersionInfo(), len(r.GetResources()))
	}
}

// TestDeltaRules: subscriptions by name, unsubscribe and resubscribe, removals, and
// initial_resource_versions on a new stream (an Envoy moving to another replica keeps
// what it holds).
func TestDeltaRules(t *testing.T) {
	s, conn := serve(t, withScope("v1"))
	c := newDelta(t, conn)
	c.send(&discovery.DeltaDiscoveryRequest{Node: edgeNode("n1"), TypeUrl: resource.ClusterType})
	cds := c.recv()
	if got := deltaNames(cds); !slices.Equal(got, []string{"a", "b", "scopegate_authz"}) {
		t.Fatalf("clusters %v", got)
	}
	ackDelta(c, cds)
	held := map[string]string{}
	for _, r := range cds.GetResources() {
		held[r.GetName()] = r.GetVersion()
	}

	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"a"}})
	if got := deltaNames(c.recv()); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("subscribe a: %v", got)
	}
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"b"}})
	if got := deltaNames(c.recv()); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("subscribe b: %v, want b alone (a is held)", got)
	}
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesUnsubscribe: []string{"a"}})
	c.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: []string{"a"}})
	if got := deltaNames(c.recv()); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("resubscribe a: %v, want a again (the client dropped it)", got)
	}

	// Upstream b goes: its cluster is removed from the wildcard subscription.
	smaller := strings.Replace(strings.Replace(withScope("v1"), "              - {name: b, match: {prefix: /b}, upstream: b, scopes: [s]}\n", "", 1),
		`  - {name: b, endpoints: ["127.0.0.1:8082"]}`+"\n", "", 1)
	if err := s.Apply(context.Background(), build(t, smaller)); err != nil {
		t.Fatal(err)
	}
	for {
		r := c.recv()
		ackDelta(c, r)
		if r.GetTypeUrl() != resource.ClusterType {
			continue
		}
		if len(r.GetResources()) != 0 || !slices.Equal(r.GetRemovedResources(), []string{"b"}) {
			t.Fatalf("clusters after removing b: %v removed %v", deltaNames(r), r.GetRemovedResources())
		}
		break
	}

	// A new stream declaring what it holds: unchanged clusters are not sent again, a stale
	// one is, and one the fleet no longer has is removed. The first wildcard answer comes
	// even when it carries nothing.
	_, conn2 := serve(t, withScope("v1"))
	d := newDelta(t, conn2)
	initial := map[string]string{"a": held["a"], "scopegate_authz": "stale", "gone": "x"}
	d.send(&discovery.DeltaDiscoveryRequest{Node: edgeNode("n2"), TypeUrl: resource.ClusterType, InitialResourceVersions: initial})
	r := d.recv()
	if got := deltaNames(r); !slices.Equal(got, []string{"b", "scopegate_authz"}) || !slices.Equal(r.GetRemovedResources(), []string{"gone"}) {
		t.Fatalf("with initial versions: sent %v removed %v, want b and scopegate_authz sent, gone removed", got, r.GetRemovedResources())
	}
	e := newDelta(t, conn2)
	e.send(&discovery.DeltaDiscoveryRequest{Node: edgeNode("n3"), TypeUrl: resource.ClusterType, InitialResourceVersions: held})
	if r := e.recv(); len(r.GetResources()) != 0 || len(r.GetRemovedResources()) != 0 || r.GetSystemVersionInfo() == "" {
		t.Fatalf("holding every cluster already: %v removed %v (version %q), want an empty answer", deltaNames(r), r.GetRemovedResources(), r.GetSystemVersionInfo())
	}
}

// TestPerTypeService: the CDS service (Envoys without ADS) serves its type with the type
// URL implied, refuses another type, and REST fetch is refused.
func TestPerTypeService(t *testing.T) {
	_, conn := serve(t, withScope("v1"))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cds := clusterservice.NewClusterDiscoveryServiceClient(conn)
	st, err := cds.StreamClusters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DiscoveryRequest{Node: edgeNode("n1")}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetTypeUrl() != resource.ClusterType || len(resp.GetResources()) != 3 {
		t.Fatalf("CDS stream: %s with %d resources", resp.GetTypeUrl(), len(resp.GetResources()))
	}
	if err := st.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ListenerType, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("listeners on a CDS stream: %v, want InvalidArgument", err)
	}
	if _, err := cds.FetchClusters(ctx, &discovery.DiscoveryRequest{Node: edgeNode("n1")}); status.Code(err) != codes.Unimplemented {
		t.Errorf("REST fetch: %v, want Unimplemented", err)
	}
}

// TestSubscriptionBounded: a client cannot make the server keep names without bound: past
// the fleet's resources plus maxUnknownNames, the stream is refused.
func TestSubscriptionBounded(t *testing.T) {
	_, conn := serve(t, withScope("v1"))
	names := make([]string, 0, maxUnknownNames+len(endpointNames)+1)
	names = append(names, endpointNames...)
	for i := len(names); i < cap(names); i++ {
		names = append(names, fmt.Sprintf("junk-%d", i))
	}
	for _, proto := range []string{"sotw", "delta"} {
		t.Run(proto, func(t *testing.T) {
			var err error
			if proto == "sotw" {
				c := newSotW(t, conn)
				c.send(&discovery.DiscoveryRequest{Node: edgeNode("n1"), TypeUrl: resource.EndpointType, ResourceNames: names})
				_, err = c.s.Recv()
			} else {
				c := newDelta(t, conn)
				c.send(&discovery.DeltaDiscoveryRequest{Node: edgeNode("n1"), TypeUrl: resource.EndpointType, ResourceNamesSubscribe: names})
				_, err = c.s.Recv()
			}
			if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "endpoints") {
				t.Errorf("stream ended with %v, want ResourceExhausted naming the type", err)
			}
		})
	}
}
