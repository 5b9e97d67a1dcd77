package xdsserver

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/mem"

	"github.com/scopegate/scopegate/controlplane/translate"
)

// numTypes is the number of resource types served, in push order (ResourceTypes).
const numTypes = 5

// typeIndex is typeURL's place in ResourceTypes, or -1 for a type not served.
func typeIndex(typeURL string) int {
	switch typeURL {
	case resource.ClusterType:
		return 0
	case resource.EndpointType:
		return 1
	case resource.ListenerType:
		return 2
	case resource.RouteType:
		return 3
	case resource.SecretType:
		return 4
	}
	return -1
}

// typeVersion is one resource type of one fleet at one content version, encoded once: the
// state-of-the-world response (all but the nonce) and each resource's delta entry are
// built here, when the version is applied, and every stream that needs them sends these
// same bytes. Per-resource versions for delta (SHA-256 of each resource's encoding, as
// go-control-plane computes them, so replicas agree) are computed here too, once.
// Immutable once built.
type typeVersion struct {
	typeURL string
	version string
	names   []string // sorted
	index   map[string]int
	hashes  []string // per resource: its delta version

	sotw      mem.Buffer   // DiscoveryResponse: version_info, resources, type_url
	deltaHead mem.Buffer   // DeltaDiscoveryResponse: system_version_info, type_url
	deltaAll  mem.Buffer   // every resource's entry, concatenated
	delta     []mem.Buffer // each resource's entry (a slice of deltaAll)
	size      int          // bytes of the resources' encodings

	plans planCache // delta responses from a held version to this one
}

// encodings and hashed count typeVersions built and resources hashed, for tests: both
// follow the versions applied, never the streams served.
var encodings, hashed atomic.Int64

func newTypeVersion(typeURL, version string, encoded []translate.Encoded) *typeVersion {
	encodings.Add(1)
	hashed.Add(int64(len(encoded)))
	tv := &typeVersion{
		typeURL: typeURL,
		version: version,
		names:   make([]string, len(encoded)),
		index:   make(map[string]int, len(encoded)),
		hashes:  make([]string, len(encoded)),
		delta:   make([]mem.Buffer, len(encoded)),
	}
	// translate sorts resources by name; sort again only if a caller did not.
	if !sort.SliceIsSorted(encoded, func(i, j int) bool { return encoded[i].Name < encoded[j].Name }) {
		encoded = append([]translate.Encoded(nil), encoded...)
		sort.Slice(encoded, func(i, j int) bool { return encoded[i].Name < encoded[j].Name })
	}
	size := 0
	for _, e := range encoded {
		size += len(e.Bytes)
	}
	tv.size = size
	perEntry := 16 + len(typeURL)
	sotw := make([]byte, 0, size+len(encoded)*perEntry+2*len(version)+2*len(typeURL)+16)
	sotw = appendString(sotw, sotwVersionInfo, version)
	all := make([]byte, 0, size+len(encoded)*(perEntry+96))
	offsets := make([]int, len(encoded)+1)
	for i, e := range encoded {
		tv.names[i] = e.Name
		tv.index[e.Name] = i
		tv.hashes[i] = cache.HashResource(e.Bytes)
		sotw = appendAny(sotw, sotwResources, typeURL, e.Bytes)
		all = appendResource(all, typeURL, e.Name, tv.hashes[i], e.Bytes)
		offsets[i+1] = len(all)
	}
	sotw = appendString(sotw, sotwTypeURL, typeURL)
	tv.sotw = shared(sotw)
	for i := range encoded {
		tv.delta[i] = shared(all[offsets[i]:offsets[i+1]:offsets[i+1]])
	}
	tv.deltaAll = shared(all)
	head := appendString(nil, deltaSystemVersionInfo, version)
	tv.deltaHead = shared(appendString(head, deltaTypeURL, typeURL))
	return tv
}

func (tv *typeVersion) has(name string) bool {
	_, ok := tv.index[name]
	return ok
}

// fleetSnapshot is what a fleet serves: one typeVersion per type, in push order.
type fleetSnapshot [numTypes]*typeVersion

// fleet is one configured fleet: its current snapshot and the streams to tell when it
// changes.
type fleet struct {
	name string
	snap atomic.Pointer[fleetSnapshot]

	mu      sync.Mutex
	streams map[waker]struct{}
}

// waker is a stream that sends what is due when woken.
type waker interface{ wake() }

func newFleet(name string) *fleet {
	return &fleet{name: name, streams: map[waker]struct{}{}}
}

func (f *fleet) add(w waker) {
	f.mu.Lock()
	f.streams[w] = struct{}{}
	f.mu.Unlock()
}

func (f *fleet) remove(w waker) {
	f.mu.Lock()
	delete(f.streams, w)
	f.mu.Unlock()
}

// set installs a snapshot and wakes every stream of the fleet. Waking only flags a
// stream; each sends from its own goroutine, so a slow Envoy delays no other.
func (f *fleet) set(s *fleetSnapshot) {
	f.snap.Store(s)
	f.mu.Lock()
	for w := range f.streams {
		w.wake()
	}
	f.mu.Unlock()
}

// nextSnapshot builds the snapshot of tf, reusing the typeVersions of cur whose version did
// not change (their bytes and hashes are already made).
func nextSnapshot(cur *fleetSnapshot, tf *translate.Fleet) *fleetSnapshot {
	next := &fleetSnapshot{}
	for i, typ := range ResourceTypes() {
		v := tf.Versions[typ]
		if cur != nil && cur[i] != nil && cur[i].version == v {
			next[i] = cur[i]
			continue
		}
		next[i] = newTypeVersion(typ, v, tf.Encoded[typ])
	}
	return next
}
