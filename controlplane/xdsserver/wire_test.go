package xdsserver

import (
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/scopegate/scopegate/internal/testing/envoysim"
)

func decodeSotW(t *testing.T, bufs mem.BufferSlice) *discovery.DiscoveryResponse {
	t.Helper()
	return decode(t, bufs, &discovery.DiscoveryResponse{})
}

func decodeDelta(t *testing.T, bufs mem.BufferSlice) *discovery.DeltaDiscoveryResponse {
	t.Helper()
	return decode(t, bufs, &discovery.DeltaDiscoveryResponse{})
}

// decode unmarshals a response as it went on the wire into out.
func decode[M proto.Message](t *testing.T, bufs mem.BufferSlice, out M) M {
	t.Helper()
	if err := proto.Unmarshal(bufs.Materialize(), out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTypeVersionWire: the bytes made once per version are, on the wire, the responses
// go-control-plane would have built: a DiscoveryResponse with every resource packed in an
// Any, and delta Resources named and versioned by the SHA-256 of their encoding.
func TestTypeVersionWire(t *testing.T) {
	f := build(t, withScope("orders:read"))["edge"]
	for _, typ := range ResourceTypes() {
		t.Run(TypeName(typ), func(t *testing.T) {
			tv := newTypeVersion(typ, f.Versions[typ], f.Encoded[typ])
			want := &discovery.DiscoveryResponse{VersionInfo: f.Versions[typ], TypeUrl: typ, Nonce: "7"}
			wantDelta := &discovery.DeltaDiscoveryResponse{SystemVersionInfo: f.Versions[typ], TypeUrl: typ, Nonce: "8"}
			for _, r := range f.Resources[typ] {
				a, err := anypb.New(r)
				if err != nil {
					t.Fatal(err)
				}
				b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				a.Value = b
				want.Resources = append(want.Resources, a)
				wantDelta.Resources = append(wantDelta.Resources, &discovery.Resource{
					Name: envoysim.NameOf(r), Version: cache.HashResource(b), Resource: a})
			}
			got := decodeSotW(t, mem.BufferSlice{tv.sotw, nonceField(sotwNonce, "7")})
			if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
				t.Errorf("SotW response (-want +got):\n%s", d)
			}
			gotDelta := decodeDelta(t, mem.BufferSlice{tv.deltaHead, tv.deltaAll, nonceField(deltaNonce, "8")})
			if d := cmp.Diff(wantDelta, gotDelta, protocmp.Transform()); d != "" {
				t.Errorf("delta response (-want +got):\n%s", d)
			}
			// Each resource's entry alone is that resource; removals ride along.
			for i := range tv.names {
				p := &deltaPlan{bufs: mem.BufferSlice{tv.deltaHead, tv.delta[i], shared(appendString(nil, deltaRemovedResources, "gone"))}}
				one := decodeDelta(t, p.bufs)
				if len(one.Resources) != 1 || !proto.Equal(one.Resources[0], wantDelta.Resources[i]) || len(one.RemovedResources) != 1 || one.RemovedResources[0] != "gone" {
					t.Errorf("entry %d decodes to %v", i, one)
				}
			}
		})
	}
}
