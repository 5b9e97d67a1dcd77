package translate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// Snapshot packs the fleet's resources into a go-control-plane snapshot, each type stamped
// with its own content version (cache.NewSnapshot would give every type one version). The
// xDS server does not serve it (it sends Encoded); validation runs its Consistent check.
func (f *Fleet) Snapshot() (*cache.Snapshot, error) {
	versions := f.Versions
	if versions == nil {
		_, v, err := encode(f.Resources)
		if err != nil {
			return nil, err
		}
		versions = v
	}
	return f.snapshot(versions)
}

// TypeName is the short name of a resource type URL ("clusters", ..., "other" for a type a
// fleet does not carry): the xDS server's metric labels and /status, and the golden files.
func TypeName(typeURL string) string {
	switch typeURL {
	case resource.ClusterType:
		return "clusters"
	case resource.EndpointType:
		return "endpoints"
	case resource.ListenerType:
		return "listeners"
	case resource.RouteType:
		return "routes"
	case resource.SecretType:
		return "secrets"
	}
	return "other"
}

// snapshot packs the resources with the given versions (nil: none, for Consistent alone).
func (f *Fleet) snapshot(versions map[resource.Type]string) (*cache.Snapshot, error) {
	s := &cache.Snapshot{}
	for _, typ := range Types {
		idx := cache.GetResponseType(typ)
		if idx == types.UnknownType {
			return nil, fmt.Errorf("unknown resource type %s", typ)
		}
		s.Resources[idx] = cache.NewResources(versions[typ], f.Resources[typ])
	}
	return s, nil
}

// Encoded is one resource in its deterministic protobuf encoding: the bytes its type's
// content version hashes, and the bytes the xDS server sends (wrapped in an Any), so a
// version is marshalled once however many Envoys receive it.
type Encoded struct {
	Name  string
	Bytes []byte
}

// encode marshals every resource once (deterministically, sorted by name as Resources are)
// and hashes each type's encodings into its content version. The version of an empty type
// is the hash of nothing, never "", so a client subscribing with no version still gets an
// (empty) answer.
func encode(res map[resource.Type][]types.Resource) (map[resource.Type][]Encoded, map[resource.Type]string, error) {
	opts := proto.MarshalOptions{Deterministic: true}
	encoded := make(map[resource.Type][]Encoded, len(Types))
	versions := make(map[resource.Type]string, len(Types))
	for _, typ := range Types {
		h := sha256.New()
		out := make([]Encoded, 0, len(res[typ]))
		for _, r := range res[typ] {
			b, err := opts.Marshal(r)
			if err != nil {
				return nil, nil, fmt.Errorf("%s %q: %w", shortType(typ), nameOf(r), err)
			}
			// Length-prefix each resource so boundaries are part of the hash.
			fmt.Fprintf(h, "%d:", len(b))
			h.Write(b)
			out = append(out, Encoded{Name: nameOf(r), Bytes: b})
		}
		encoded[typ] = out
		versions[typ] = hex.EncodeToString(h.Sum(nil))[:16]
	}
	return encoded, versions, nil
}
