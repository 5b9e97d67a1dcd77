package xdsserver

import (
	"slices"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// wildcardName is the explicit wildcard subscription.
const wildcardName = "*"

// sotwStream is a state-of-the-world stream. Its rules are go-control-plane's (ordered ADS
// with an ADS snapshot cache), which the rest of the control plane and its tests rely on:
//   - at most one response per type is outstanding: after one is sent, the next waits for
//     the client's next request of that type (its ACK or NACK);
//   - a request whose nonce is not the last response's is superseded and ignored;
//   - a type is answered when the version the client holds (its request's version_info)
//     differs from the fleet's, or when the stream has not yet sent this version;
//   - a non-wildcard subscription (endpoints, route configurations, secrets) is answered
//     only once it names every resource of the type, and the answer is the whole type:
//     so a response at a version always carries all of that version, which lets Apply
//     wait for new endpoints to be acknowledged before it pushes the routes using them.
type sotwStream struct {
	streamBase
	subs [numTypes]sotwSub // guarded by mu
}

type sotwSub struct {
	subscribed bool
	legacy     bool // no names asked yet: an empty request is a wildcard (legacy wildcard)
	wildcard   bool
	names      *nameSet
	// clientVersion is the version the client holds (version_info of its last request), or
	// after a NACK the version it rejected, so that version is not sent to it again.
	clientVersion string
	awaiting      bool   // a response is out and not yet answered
	nonce         string // the last response's
	// sentVersion is the version last sent while the subscription named all of it ("":
	// none, or a name of it was dropped since): a client re-subscribing at the version it
	// holds gets it again only if this stream has not sent it.
	sentVersion string
}

func (s *Server) serveSotW(gs grpc.ServerStream, typeURL string) error {
	st := &sotwStream{streamBase: s.newStreamBase(gs, typeURL, false)}
	return s.serve(&st.streamBase, st)
}

func (st *sotwStream) receive() error { return receive(st.gs, st.handle) }

func (st *sotwStream) handle(req *discovery.DiscoveryRequest) error {
	// The tracker identifies the node on the first request (refusing an unknown fleet or a
	// certificate of another one), records ACKs and NACKs, and on a NACK sets version_info
	// to the rejected version.
	i, err := st.lockRequest(&req.TypeUrl, req.GetNode(), func() error { return st.srv.tracker.requestOn(st.tracked, req) })
	if err != nil {
		return err
	}
	defer st.mu.Unlock()
	if i < 0 {
		return nil // a type this server does not serve is never answered
	}
	sub := &st.subs[i]
	if sub.nonce != "" && req.GetResponseNonce() != sub.nonce {
		return nil // superseded by a response the client has not seen yet
	}
	if err := st.subscribeLocked(i, sub, req.GetResourceNames()); err != nil {
		return err
	}
	sub.subscribed = true
	sub.clientVersion = req.GetVersionInfo()
	sub.awaiting = false
	// Most requests are ACKs of the version just sent: wake the sender only when they
	// leave something to send.
	if snap := st.snapshotLocked(); snap != nil && sub.due(snap[i]) {
		st.wake()
	}
	return nil
}

// subscribeLocked sets the subscription from a request's resource_names (the whole set, as
// state-of-the-world requests carry it).
func (st *sotwStream) subscribeLocked(i int, sub *sotwSub, names []string) error {
	if !sub.subscribed {
		sub.legacy, sub.wildcard = true, len(names) == 0
	}
	if sub.legacy {
		if len(names) == 0 {
			return nil
		}
		sub.legacy = false
	}
	wildcard := slices.Contains(names, wildcardName)
	if wildcard {
		names = slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == wildcardName })
	}
	sub.wildcard = wildcard
	if !sub.names.same(names) {
		if max := st.maxNamesLocked(i); len(names) > max {
			return status.Errorf(codes.ResourceExhausted, "%s: %d resource names, more than the %d this fleet allows", TypeName(ResourceTypes()[i]), len(names), max)
		}
		old := sub.names
		sub.names = st.srv.names.get(names)
		st.srv.names.put(old)
		if snap := st.snapshotLocked(); !wildcard && snap != nil && snap[i] != nil && !sub.names.covers(snap[i]) {
			sub.sentVersion = ""
		}
	}
	return nil
}

// due reports whether tv is to be sent on this subscription now.
func (sub *sotwSub) due(tv *typeVersion) bool {
	if !sub.subscribed || sub.awaiting || tv == nil {
		return false
	}
	if !sub.wildcard && (sub.names == nil || !sub.names.covers(tv)) {
		return false
	}
	if sub.clientVersion != tv.version {
		return true
	}
	return len(tv.names) > 0 && sub.sentVersion != tv.version
}

func (st *sotwStream) flush() error {
	for {
		st.mu.Lock()
		var (
			msg                     *frame
			typeURL, version, nonce string
		)
		if snap := st.snapshotLocked(); snap != nil {
			for i := range st.subs {
				sub, tv := &st.subs[i], snap[i]
				if !sub.due(tv) {
					continue
				}
				nonce = st.nextNonceLocked()
				sub.awaiting, sub.nonce, sub.sentVersion = true, nonce, tv.version
				msg = &frame{bufs: mem.BufferSlice{tv.sotw, nonceField(sotwNonce, nonce)}}
				typeURL, version = tv.typeURL, tv.version
				break
			}
		}
		st.mu.Unlock()
		if msg == nil {
			return nil
		}
		st.srv.tracker.sent(st.tracked, typeURL, version, nonce)
		if err := st.gs.SendMsg(msg); err != nil {
			return err
		}
	}
}

func (st *sotwStream) release() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for i := range st.subs {
		st.srv.names.put(st.subs[i].names)
		st.subs[i].names = nil
	}
}
