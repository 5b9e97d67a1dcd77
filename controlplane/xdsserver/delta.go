package xdsserver

import (
	"slices"
	"sync"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// deltaStream is an incremental stream. Its rules are go-control-plane's delta server's:
// a response carries the subscribed resources whose version differs from the one the
// client holds, and the removal of held ones that are gone; after one is sent, the next for
// that type waits for the client's next request of the type; the first wildcard
// subscription is answered even when there is nothing to send, so Envoy can finish its
// initialisation.
//
// What a client holds is not a per-stream map: it is the typeVersion last sent (shared
// with every stream), restricted to the interned names the subscription had then, minus
// names unsubscribed since. So a connected Envoy costs the same however many resources the
// fleet has, and streams holding the same version and names share the computed response
// (planCache): the diff, and the bytes, are made once per version.
type deltaStream struct {
	streamBase
	subs [numTypes]deltaSub // guarded by mu
}

type deltaSub struct {
	subscribed bool
	legacy     bool // no names asked yet: an empty request is a wildcard (legacy wildcard)
	wildcard   bool
	names      *nameSet // explicit subscriptions
	awaiting   bool     // a response is out and not yet answered
	answered   bool     // a response of this type was sent on this stream
	held       held
}

// held is what the client holds of one type.
type held struct {
	base *typeVersion // the version last sent or settled (nil: nothing yet, see initial)
	all  bool         // all of base (a wildcard subscription)
	set  *nameSet     // otherwise base restricted to these names; a reference is held
	// dropped are names unsubscribed since base: the client no longer holds them.
	dropped map[string]struct{}
	// initial is initial_resource_versions, until the first response.
	initial map[string]string
}

// version is the version of name the client holds ("" for none).
func (h *held) version(name string) string {
	if h.base == nil {
		return h.initial[name]
	}
	if _, ok := h.dropped[name]; ok {
		return ""
	}
	if !h.all && !h.set.has(name) {
		return ""
	}
	if i, ok := h.base.index[name]; ok {
		return h.base.hashes[i]
	}
	return ""
}

// names lists the names the client holds.
func (h *held) names(yield func(string) bool) {
	if h.base == nil {
		for n := range h.initial {
			if !yield(n) {
				return
			}
		}
		return
	}
	for _, n := range h.base.names {
		if h.version(n) != "" && !yield(n) {
			return
		}
	}
}

func (s *Server) serveDelta(gs grpc.ServerStream, typeURL string) error {
	st := &deltaStream{streamBase: s.newStreamBase(gs, typeURL, true)}
	return s.serve(&st.streamBase, st)
}

func (st *deltaStream) receive() error { return receive(st.gs, st.handle) }

func (st *deltaStream) handle(req *discovery.DeltaDiscoveryRequest) error {
	// The tracker identifies the node on the first request, maps the nonce a request
	// answers to the version it carried (delta ACKs carry none) and records the ACK or NACK.
	i, err := st.lockRequest(&req.TypeUrl, req.GetNode(), func() error { return st.srv.tracker.deltaRequestOn(st.tracked, req) })
	if err != nil {
		return err
	}
	defer st.mu.Unlock()
	if i < 0 {
		return nil
	}
	sub := &st.subs[i]
	if !sub.subscribed {
		sub.subscribed = true
		sub.legacy, sub.wildcard = true, len(req.GetResourceNamesSubscribe()) == 0
		if iv := req.GetInitialResourceVersions(); len(iv) > 0 {
			if max := st.maxNamesLocked(i); len(iv) > max {
				return status.Errorf(codes.ResourceExhausted, "%s: %d initial resource versions, more than the %d this fleet allows", TypeName(ResourceTypes()[i]), len(iv), max)
			}
			sub.held.initial = iv
		}
	}
	if err := st.subscribeLocked(i, sub, req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe()); err != nil {
		return err
	}
	sub.awaiting = false
	// Most requests are ACKs of the version just sent: wake the sender only when they
	// leave something to send.
	if snap := st.snapshotLocked(); snap != nil && snap[i] != nil {
		if p := st.planLocked(sub, snap[i]); !p.empty() || (sub.wildcard && !sub.answered) {
			st.wake()
		}
	}
	return nil
}

// subscribeLocked applies a request's subscribe and unsubscribe lists.
func (st *deltaStream) subscribeLocked(i int, sub *deltaSub, subscribe, unsubscribe []string) error {
	if sub.legacy {
		if len(subscribe) == 0 {
			return nil // still a legacy wildcard (go-control-plane ignores unsubscriptions here too)
		}
		sub.legacy = false
	}
	if len(subscribe) == 0 && len(unsubscribe) == 0 {
		return nil
	}
	var names []string
	if sub.names != nil {
		names = slices.Clone(sub.names.names)
	}
	for _, n := range subscribe {
		if n == wildcardName {
			sub.wildcard = true
			continue
		}
		names = append(names, n)
	}
	for _, n := range unsubscribe {
		if n == wildcardName {
			sub.wildcard = false
			continue
		}
		names = slices.DeleteFunc(names, func(x string) bool { return x == n })
		// The client drops it (or, under a wildcard, asks for it again): either way it no
		// longer holds it.
		sub.held.drop(n)
	}
	if sub.names.same(names) {
		return nil
	}
	if max := st.maxNamesLocked(i); len(names) > max {
		return status.Errorf(codes.ResourceExhausted, "%s: %d resource names, more than the %d this fleet allows", TypeName(ResourceTypes()[i]), len(names), max)
	}
	old := sub.names
	sub.names = st.srv.names.get(names)
	st.srv.names.put(old)
	return nil
}

func (h *held) drop(name string) {
	if h.base == nil {
		delete(h.initial, name)
		return
	}
	if h.version(name) == "" {
		return
	}
	if h.dropped == nil {
		h.dropped = map[string]struct{}{}
	}
	h.dropped[name] = struct{}{}
}

// deltaPlan is a delta response without its nonce: which resources, which removals, and
// the bytes.
type deltaPlan struct {
	bufs      mem.BufferSlice // head, resources, removed_resources: read-only, shared
	resources int
	removed   int
}

var noChange deltaPlan

func (p *deltaPlan) empty() bool { return p.resources == 0 && p.removed == 0 }

// planKey names the client state a cached plan starts from: the version it holds, the
// names it subscribes to (nil for a wildcard), and whether it is a wildcard.
type planKey struct {
	from     string
	set      *nameSet
	wildcard bool
}

// planCache keeps the few plans streams ask of a typeVersion (in practice one: every
// stream of the fleet holds the previous version). Keys are versions this server sent and
// interned name sets, so no client fills it with junk; it holds at most maxPlans.
type planCache struct {
	mu    sync.Mutex
	plans []cachedPlan
}

type cachedPlan struct {
	key  planKey
	plan *deltaPlan
}

const maxPlans = 8

func (c *planCache) get(key planKey, make func() *deltaPlan) *deltaPlan {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range c.plans {
		if p.key == key {
			if i > 0 { // most recently used first
				copy(c.plans[1:i+1], c.plans[:i])
				c.plans[0] = p
			}
			return p.plan
		}
	}
	p := make()
	if len(c.plans) < maxPlans {
		c.plans = append(c.plans, cachedPlan{})
	}
	copy(c.plans[1:], c.plans[:len(c.plans)-1])
	c.plans[0] = cachedPlan{key: key, plan: p}
	return p
}

// planLocked is the response due on sub for tv, shared with every stream in the same state.
func (st *deltaStream) planLocked(sub *deltaSub, tv *typeVersion) *deltaPlan {
	h := &sub.held
	if h.base != nil && len(h.dropped) == 0 {
		if (sub.wildcard && h.all) || (!sub.wildcard && !h.all && h.set == sub.names) {
			if h.base.version == tv.version {
				return &noChange // the client holds tv's share already
			}
			key := planKey{from: h.base.version, set: h.set, wildcard: sub.wildcard}
			return tv.plans.get(key, func() *deltaPlan { return makePlan(sub, tv) })
		}
	}
	return makePlan(sub, tv)
}

// makePlan diffs what the client holds against tv.
func makePlan(sub *deltaSub, tv *typeVersion) *deltaPlan {
	h := &sub.held
	var send []int
	var removed []string
	if sub.wildcard {
		for i, n := range tv.names {
			if h.version(n) != tv.hashes[i] {
				send = append(send, i)
			}
		}
		for n := range h.names {
			if !tv.has(n) {
				removed = append(removed, n)
			}
		}
		slices.Sort(removed)
	} else if sub.names != nil {
		for _, n := range sub.names.names {
			if i, ok := tv.index[n]; ok {
				if h.version(n) != tv.hashes[i] {
					send = append(send, i)
				}
			} else if h.version(n) != "" {
				removed = append(removed, n)
			}
		}
		slices.Sort(send)
	}
	p := &deltaPlan{resources: len(send), removed: len(removed)}
	p.bufs = append(p.bufs, tv.deltaHead)
	if len(send) == len(tv.names) && len(send) > 0 {
		p.bufs = append(p.bufs, tv.deltaAll)
	} else {
		for _, i := range send {
			p.bufs = append(p.bufs, tv.delta[i])
		}
	}
	if len(removed) > 0 {
		var b []byte
		for _, n := range removed {
			b = appendString(b, deltaRemovedResources, n)
		}
		p.bufs = append(p.bufs, shared(b))
	}
	return p
}

// settleLocked records that the client now holds tv, restricted to its subscription.
func (st *deltaStream) settleLocked(sub *deltaSub, tv *typeVersion) {
	h := &sub.held
	var set *nameSet
	if !sub.wildcard {
		set = sub.names
		st.srv.names.ref(set)
	}
	st.srv.names.put(h.set)
	*h = held{base: tv, all: sub.wildcard, set: set}
}

func (st *deltaStream) flush() error {
	for {
		st.mu.Lock()
		var (
			msg              *frame
			typeURL, version string
			nonce            string
		)
		if snap := st.snapshotLocked(); snap != nil {
			for i := range st.subs {
				sub, tv := &st.subs[i], snap[i]
				if !sub.subscribed || sub.awaiting || tv == nil {
					continue
				}
				p := st.planLocked(sub, tv)
				if p.empty() && (!sub.wildcard || sub.answered) {
					// Nothing to send: the client already holds tv's share. Hold tv rather
					// than an older version, so old versions are not kept alive.
					if sub.held.base != tv && sub.held.base != nil {
						st.settleLocked(sub, tv)
					}
					continue
				}
				nonce = st.nextNonceLocked()
				bufs := make(mem.BufferSlice, 0, len(p.bufs)+1)
				msg = &frame{bufs: append(append(bufs, p.bufs...), nonceField(deltaNonce, nonce))}
				typeURL, version = tv.typeURL, tv.version
				st.settleLocked(sub, tv)
				sub.awaiting, sub.answered = true, true
				break
			}
		}
		st.mu.Unlock()
		if msg == nil {
			return nil
		}
		st.srv.tracker.deltaSent(st.tracked, typeURL, version, nonce)
		if err := st.gs.SendMsg(msg); err != nil {
			return err
		}
	}
}

func (st *deltaStream) release() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for i := range st.subs {
		st.srv.names.put(st.subs[i].names)
		st.srv.names.put(st.subs[i].held.set)
		st.subs[i].names, st.subs[i].held = nil, held{}
	}
}
