package xdsserver

import (
	"crypto/sha256"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
)

// nameSet is the set of resource names a stream subscribes to for one type. Sets are
// interned: every stream subscribing to the same names (every Envoy of a fleet asks for the
// same route configurations and endpoints) holds the same immutable set, so a connected
// Envoy costs a pointer per type however many names it asks for, and whether a set covers a
// version's resources is worked out once per set and version, not once per stream.
type nameSet struct {
	key   string
	names []string // sorted, unique
	refs  int      // guarded by the interner's mutex

	covered atomic.Pointer[coverage]
}

type coverage struct {
	version string // a typeVersion's version: equal versions have equal names
	covers  bool
}

func (n *nameSet) has(name string) bool {
	if n == nil {
		return false
	}
	_, ok := slices.BinarySearch(n.names, name)
	return ok
}

// covers reports whether the set names every resource of tv (memoised for the last tv asked).
func (n *nameSet) covers(tv *typeVersion) bool {
	if n == nil {
		return len(tv.names) == 0
	}
	if c := n.covered.Load(); c != nil && c.version == tv.version {
		return c.covers
	}
	ok := true
	for _, name := range tv.names {
		if !n.has(name) {
			ok = false
			break
		}
	}
	n.covered.Store(&coverage{version: tv.version, covers: ok})
	return ok
}

// interner shares name sets between streams. An entry lives while a stream holds it, so
// the table never holds more sets than streams hold (at most one per stream and type).
type interner struct {
	mu   sync.Mutex
	sets map[string]*nameSet
}

func newInterner() *interner { return &interner{sets: map[string]*nameSet{}} }

// get returns the shared set of names (sorted and deduplicated here; the caller's slice is
// not kept), with one more reference; nil for no names.
func (in *interner) get(names []string) *nameSet {
	if len(names) == 0 {
		return nil
	}
	sorted := names
	if !sortedUnique(names) {
		sorted = slices.Clone(names)
		sort.Strings(sorted)
		sorted = slices.Compact(sorted)
	}
	h := sha256.New()
	for _, n := range sorted {
		h.Write([]byte(strconv.Itoa(len(n))))
		h.Write([]byte{':'})
		h.Write([]byte(n))
	}
	key := string(h.Sum(nil))
	in.mu.Lock()
	defer in.mu.Unlock()
	if s, ok := in.sets[key]; ok {
		s.refs++
		return s
	}
	s := &nameSet{key: key, names: slices.Clone(sorted), refs: 1}
	in.sets[key] = s
	return s
}

func sortedUnique(names []string) bool {
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			return false
		}
	}
	return true
}

// ref takes one more reference to s.
func (in *interner) ref(s *nameSet) {
	if s == nil {
		return
	}
	in.mu.Lock()
	s.refs++
	in.mu.Unlock()
}

// put drops a reference taken by get.
func (in *interner) put(s *nameSet) {
	if s == nil {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if s.refs--; s.refs <= 0 {
		delete(in.sets, s.key)
	}
}

// same reports whether names (in any order, with duplicates) is exactly the set s.
func (s *nameSet) same(names []string) bool {
	if s == nil {
		return len(names) == 0
	}
	if len(names) < len(s.names) {
		return false
	}
	for _, n := range names {
		if !s.has(n) {
			return false
		}
	}
	// Every name is in s; s has no more names than distinct ones given only if the counts
	// of distinct names agree.
	if len(names) == len(s.names) {
		return true
	}
	seen := make(map[string]struct{}, len(s.names))
	for _, n := range names {
		seen[n] = struct{}{}
	}
	return len(seen) == len(s.names)
}
