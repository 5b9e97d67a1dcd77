package translate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Snapshot packs the fleet's resources into a go-control-plane snapshot, each type stamped
// with its own content version (cache.NewSnapshot would give every type one version, so any
// change would re-send every type over SotW).
func (f *Fleet) Snapshot() (*cache.Snapshot, error) {
	versions := f.Versions
	if versions == nil {
		v, err := contentVersions(f.Resources)
		if err != nil {
			return nil, err
		}
		versions = v
	}
	s := &cache.Snapshot{}
	for _, typ := range Types {
		idx := cache.GetResponseType(typ)
		if idx == types.UnknownType {
			return nil, fmt.Errorf("unknown resource type %s", typ)
		}
		items := f.Resources[typ]
		if typ == resource.RouteType {
			items = make([]types.Resource, 0, len(f.Resources[typ]))
			for _, r := range f.Resources[typ] {
				enc, err := preEncode(r.(*route.RouteConfiguration))
				if err != nil {
					return nil, err
				}
				items = append(items, enc)
			}
		}
		s.Resources[idx] = cache.NewResources(versions[typ], items)
	}
	return s, nil
}

// preEncode returns a RouteConfiguration that carries rc's content already encoded: its name
// as a field (the cache indexes by it) and everything else as raw bytes, which marshal by
// copying. go-control-plane marshals every resource again for every response; a route
// configuration of a few hundred routes is the one large resource, and sent to a thousand
// nodes that marshalling would dominate a push. On the wire it is the same message.
func preEncode(rc *route.RouteConfiguration) (*route.RouteConfiguration, error) {
	body := proto.Clone(rc).(*route.RouteConfiguration)
	body.Name = ""
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("route configuration %q: %w", rc.GetName(), err)
	}
	out := &route.RouteConfiguration{Name: rc.GetName()}
	out.ProtoReflect().SetUnknown(protoreflect.RawFields(raw))
	return out, nil
}

// contentVersions hashes each type's resources (sorted by name, deterministically
// marshalled). The version of an empty type is the hash of nothing, never "", so a client
// subscribing with no version still gets an (empty) answer.
func contentVersions(res map[resource.Type][]types.Resource) (map[resource.Type]string, error) {
	opts := proto.MarshalOptions{Deterministic: true}
	out := make(map[resource.Type]string, len(Types))
	for _, typ := range Types {
		h := sha256.New()
		var buf []byte
		for _, r := range res[typ] {
			var err error
			buf, err = opts.MarshalAppend(buf[:0], r)
			if err != nil {
				return nil, fmt.Errorf("%s %q: %w", shortType(typ), nameOf(r), err)
			}
			// Length-prefix each resource so boundaries are part of the hash.
			fmt.Fprintf(h, "%d:", len(buf))
			h.Write(buf)
		}
		out[typ] = hex.EncodeToString(h.Sum(nil))[:16]
	}
	return out, nil
}
