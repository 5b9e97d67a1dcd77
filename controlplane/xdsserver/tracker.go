package xdsserver

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/scopegate/scopegate/internal/spiffe"
)

// maxPendingDeltaNonces bounds the delta responses remembered while awaiting their ACK.
const maxPendingDeltaNonces = 32

// tracker follows every ADS stream: which node and fleet it is, what each resource type was
// sent and acknowledged at, and the last NACK.
//
// SotW and delta streams are numbered by separate counters, so their IDs can collide: a stream is keyed by (protocol, ID). Delta requests after the first may omit
// the node, so the node is remembered per stream from its first request.
type tracker struct {
	log     *slog.Logger
	metrics *metrics
	known   func(fleet string) bool
	now     func() time.Time
	// trustDomain, when set, binds each stream to the fleet its client certificate names:
	// the certificate's one URI SAN must be spiffe://<trustDomain>/fleet/<node.cluster>.
	trustDomain string

	// mu guards the set of streams and of waits; each stream's state has its own lock, so
	// streams sending and answering at once do not queue on one lock. Order: mu, then a
	// stream's mu.
	mu      sync.RWMutex
	streams map[streamKey]*streamState
	// waits are the waitAnswered calls in progress; nwaits counts them, so an answer
	// takes mu only when someone waits.
	waits  map[*answerWait]struct{}
	nwaits atomic.Int32
}

// answerWait is one waitAnswered: the streams that have yet to answer a version.
type answerWait struct {
	typeURL, version string
	pending          map[streamKey]struct{}
	done             chan struct{}
}

type streamKey struct {
	delta bool
	id    int64
}

type streamState struct {
	// Set at open.
	key     streamKey
	peer    string
	peerIDs []string // URI SANs of the verified client certificate
	since   time.Time

	mu         sync.Mutex
	node       string
	fleet      string
	identified bool // the first request with a node was seen and its fleet is configured
	types      map[string]*typeState
	lastNACK   *NACK
}

type typeState struct {
	sentVersion  string
	sentNonce    string
	sentAt       time.Time
	ackedVersion string
	ackedAt      time.Time
	// pending maps delta response nonces to the version they carried (delta ACKs carry no
	// version); order keeps the insertion order to bound it.
	pending map[string]string
	order   []string

	// This stream's series, looked up once.
	pushes, acks, nacks prometheus.Counter
}

// NACK is the last response a node rejected.
type NACK struct {
	Type    string    `json:"type"`
	Version string    `json:"version"`
	Nonce   string    `json:"nonce"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

func newTracker(log *slog.Logger, m *metrics, known func(string) bool) *tracker {
	return &tracker{log: log, metrics: m, known: known, now: time.Now, streams: map[streamKey]*streamState{}, waits: map[*answerWait]struct{}{}}
}

func (t *tracker) open(ctx context.Context, key streamKey) *streamState {
	st := &streamState{key: key, since: t.now(), types: map[string]*typeState{}}
	if p, ok := peer.FromContext(ctx); ok {
		if p.Addr != nil {
			st.peer = p.Addr.String()
		}
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			for _, u := range ti.State.VerifiedChains[0][0].URIs {
				st.peerIDs = append(st.peerIDs, u.String())
			}
		}
	}
	t.mu.Lock()
	t.streams[key] = st
	t.mu.Unlock()
	return st
}

func (t *tracker) lookup(key streamKey) *streamState {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.streams[key]
}

func (t *tracker) closed(key streamKey) {
	t.mu.Lock()
	st, ok := t.streams[key]
	delete(t.streams, key)
	for w := range t.waits {
		t.answeredLocked(w, key)
	}
	t.mu.Unlock()
	if !ok {
		return
	}
	st.mu.Lock()
	identified, node, fleet := st.identified, st.node, st.fleet
	st.mu.Unlock()
	if identified {
		t.metrics.connected.WithLabelValues(fleet).Dec()
		t.log.Info("xds stream closed", "node", node, "fleet", fleet, "stream", streamName(key))
	}
}

// identify binds the stream to its node on the first request that carries one and refuses
// the stream when the node's fleet is not configured: it would never get a snapshot.
//
// A later request may carry the node again: one naming another fleet is refused, or a stream could switch to a fleet it was not admitted to.
func (t *tracker) identify(st *streamState, node *core.Node) error {
	if st.identified {
		if node != nil && node.GetCluster() != st.fleet {
			t.metrics.identityDenied.WithLabelValues("fleet_changed").Inc()
			t.log.Warn("xds stream refused: a request named another fleet", "node", st.node, "fleet", st.fleet,
				"requested_fleet", node.GetCluster(), "peer", st.peer, "stream", streamName(st.key))
			return status.Errorf(codes.PermissionDenied, "stream of fleet %q cannot switch to fleet %q", st.fleet, node.GetCluster())
		}
		return nil
	}
	if node == nil {
		return status.Error(codes.InvalidArgument, "the first discovery request must carry the node")
	}
	st.node, st.fleet = node.GetId(), node.GetCluster()
	if t.trustDomain != "" {
		if want := spiffe.FleetID(t.trustDomain, st.fleet); len(st.peerIDs) != 1 || st.peerIDs[0] != want {
			t.metrics.identityDenied.WithLabelValues("fleet_mismatch").Inc()
			t.log.Warn("xds node refused: its client certificate does not name its fleet", "node", st.node, "fleet", st.fleet,
				"certificate_uris", st.peerIDs, "want", want, "peer", st.peer, "stream", streamName(st.key))
			return status.Errorf(codes.PermissionDenied,
				"node %q: fleet %q (node.cluster) needs a client certificate whose URI SAN is %s", st.node, st.fleet, want)
		}
	}
	if !t.known(st.fleet) {
		t.metrics.unknownFleet.Inc()
		t.log.Warn("xds node of an unknown fleet refused", "node", st.node, "fleet", st.fleet, "peer", st.peer, "stream", streamName(st.key))
		return status.Errorf(codes.FailedPrecondition,
			"node %q: fleet %q (node.cluster) is not configured on this control plane", st.node, st.fleet)
	}
	st.identified = true
	t.metrics.connected.WithLabelValues(st.fleet).Inc()
	t.log.Info("xds stream opened", "node", st.node, "fleet", st.fleet, "peer", st.peer, "stream", streamName(st.key))
	return nil
}

func (st *streamState) typ(typeURL string) *typeState {
	ts, ok := st.types[typeURL]
	if !ok {
		ts = &typeState{}
		st.types[typeURL] = ts
	}
	return ts
}

// counter is this stream's series of vec for typeURL, looked up on first use.
func (t *tracker) counter(c *prometheus.Counter, vec *prometheus.CounterVec, st *streamState, typeURL string) prometheus.Counter {
	if *c == nil {
		*c = vec.WithLabelValues(st.fleet, TypeName(typeURL))
	}
	return *c
}

func (t *tracker) nack(st *streamState, ts *typeState, typeURL, version, nonce, msg string) {
	at := t.now()
	st.lastNACK = &NACK{Type: TypeName(typeURL), Version: version, Nonce: nonce, Message: msg, At: at}
	t.counter(&ts.nacks, t.metrics.nacks, st, typeURL).Inc()
	t.log.Warn("xds NACK: Envoy rejected a configuration",
		"node", st.node, "fleet", st.fleet, "type", TypeName(typeURL), "version", version, "nonce", nonce, "error", msg)
}

func (t *tracker) ack(st *streamState, ts *typeState, typeURL, version string) {
	ts.ackedVersion, ts.ackedAt = version, t.now()
	t.counter(&ts.acks, t.metrics.acks, st, typeURL).Inc()
}

// answered tells the waits for typeURL at version that the stream has answered it (called
// without the stream's lock: mu comes first).
func (t *tracker) answered(key streamKey, typeURL, version string) {
	if t.nwaits.Load() == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for w := range t.waits {
		if w.typeURL == typeURL && w.version == version {
			t.answeredLocked(w, key)
		}
	}
}

func (t *tracker) answeredLocked(w *answerWait, key streamKey) {
	if _, ok := w.pending[key]; !ok {
		return
	}
	delete(w.pending, key)
	if len(w.pending) == 0 {
		close(w.done)
		t.removeWaitLocked(w)
	}
}

func (t *tracker) removeWaitLocked(w *answerWait) {
	if _, ok := t.waits[w]; ok {
		delete(t.waits, w)
		t.nwaits.Add(-1)
	}
}

// waitAnswered blocks until every stream of fleet that has been sent typeURL has answered
// version (ACK or NACK) or closed, or ctx ends. Streams still initialising, and streams
// opened after the call, are not waited for. Each answer costs the wait O(1), so a warm-up
// over many thousands of streams stays linear.
func (t *tracker) waitAnswered(ctx context.Context, fleet, typeURL, version string) error {
	w := &answerWait{typeURL: typeURL, version: version, pending: map[streamKey]struct{}{}, done: make(chan struct{})}
	// Counted before the streams are read: a stream answering after it was read finds the
	// wait (see answered).
	t.nwaits.Add(1)
	t.mu.Lock()
	for key, st := range t.streams {
		if st.pendingAnswer(fleet, typeURL, version) {
			w.pending[key] = struct{}{}
		}
	}
	if len(w.pending) == 0 {
		t.nwaits.Add(-1)
		t.mu.Unlock()
		return nil
	}
	t.waits[w] = struct{}{}
	t.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		t.mu.Lock()
		pending := len(w.pending)
		t.removeWaitLocked(w)
		t.mu.Unlock()
		if pending == 0 {
			return nil
		}
		return fmt.Errorf("%d node(s) of fleet %q did not answer %s version %s: %w", pending, fleet, TypeName(typeURL), version, ctx.Err())
	}
}

// pendingAnswer reports whether the stream, of fleet, was sent typeURL and has not
// answered version.
func (st *streamState) pendingAnswer(fleet, typeURL, version string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.identified || st.fleet != fleet {
		return false
	}
	ts, ok := st.types[typeURL]
	if !ok || ts.sentVersion == "" || ts.ackedVersion == version {
		return false
	}
	return st.lastNACK == nil || st.lastNACK.Type != TypeName(typeURL) || st.lastNACK.Version != version
}

// request handles a SotW request: the first one identifies the node; one answering the last
// response (same nonce) is an ACK, or a NACK when it carries error_detail. Requests with an
// older nonce are superseded and ignored, as the server ignores them.
//
// On a NACK the request's version_info (the last version Envoy accepted) is replaced with the
// rejected version before the stream sees it; otherwise the stream would find the client
// behind and send the same rejected resources straight back, in a loop. The next config change is
// pushed as usual.
func (t *tracker) request(id int64, req *discovery.DiscoveryRequest) error {
	st := t.lookup(streamKey{id: id})
	if st == nil {
		return status.Error(codes.Internal, "stream not tracked")
	}
	return t.requestOn(st, req)
}

func (t *tracker) requestOn(st *streamState, req *discovery.DiscoveryRequest) error {
	answered, version, err := st.request(t, req)
	if answered {
		t.answered(st.key, req.GetTypeUrl(), version)
	}
	return err
}

func (st *streamState) request(t *tracker, req *discovery.DiscoveryRequest) (answered bool, version string, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := t.identify(st, req.GetNode()); err != nil {
		return false, "", err
	}
	ts := st.typ(req.GetTypeUrl())
	if req.GetResponseNonce() == "" || req.GetResponseNonce() != ts.sentNonce {
		return false, "", nil
	}
	if d := req.GetErrorDetail(); d != nil {
		t.nack(st, ts, req.GetTypeUrl(), ts.sentVersion, ts.sentNonce, d.GetMessage())
		req.VersionInfo = ts.sentVersion
		return true, ts.sentVersion, nil
	}
	t.ack(st, ts, req.GetTypeUrl(), req.GetVersionInfo())
	return true, req.GetVersionInfo(), nil
}

func (t *tracker) response(id int64, resp *discovery.DiscoveryResponse) {
	if st := t.lookup(streamKey{id: id}); st != nil {
		t.sent(st, resp.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce())
	}
}

// sent records a SotW response about to be written.
func (t *tracker) sent(st *streamState, typeURL, version, nonce string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	ts := st.typ(typeURL)
	ts.sentVersion, ts.sentNonce, ts.sentAt = version, nonce, t.now()
	t.counter(&ts.pushes, t.metrics.pushes, st, typeURL).Inc()
}

// deltaRequest handles a delta request: delta ACKs carry no version, so the acknowledged
// version is the one sent with the nonce the request answers.
func (t *tracker) deltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	st := t.lookup(streamKey{delta: true, id: id})
	if st == nil {
		return status.Error(codes.Internal, "stream not tracked")
	}
	return t.deltaRequestOn(st, req)
}

func (t *tracker) deltaRequestOn(st *streamState, req *discovery.DeltaDiscoveryRequest) error {
	answered, version, err := st.deltaRequest(t, req)
	if answered {
		t.answered(st.key, req.GetTypeUrl(), version)
	}
	return err
}

func (st *streamState) deltaRequest(t *tracker, req *discovery.DeltaDiscoveryRequest) (answered bool, version string, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := t.identify(st, req.GetNode()); err != nil {
		return false, "", err
	}
	nonce := req.GetResponseNonce()
	if nonce == "" {
		return false, "", nil
	}
	ts := st.typ(req.GetTypeUrl())
	version, ok := ts.pending[nonce]
	if !ok {
		return false, "", nil
	}
	delete(ts.pending, nonce)
	if d := req.GetErrorDetail(); d != nil {
		t.nack(st, ts, req.GetTypeUrl(), version, nonce, d.GetMessage())
		return true, version, nil
	}
	t.ack(st, ts, req.GetTypeUrl(), version)
	return true, version, nil
}

func (t *tracker) deltaResponse(id int64, resp *discovery.DeltaDiscoveryResponse) {
	if st := t.lookup(streamKey{delta: true, id: id}); st != nil {
		t.deltaSent(st, resp.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce())
	}
}

// deltaSent records a delta response about to be written, remembering which version its
// nonce carries until the client answers it.
func (t *tracker) deltaSent(st *streamState, typeURL, version, nonce string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	ts := st.typ(typeURL)
	ts.sentVersion, ts.sentNonce, ts.sentAt = version, nonce, t.now()
	if ts.pending == nil {
		ts.pending = map[string]string{}
	}
	ts.pending[nonce] = version
	ts.order = append(ts.order, nonce)
	for len(ts.order) > maxPendingDeltaNonces {
		delete(ts.pending, ts.order[0])
		ts.order = ts.order[1:]
	}
	t.counter(&ts.pushes, t.metrics.pushes, st, typeURL).Inc()
}

// NodeStatus is one connected stream as /status shows it.
type NodeStatus struct {
	Node           string                `json:"node"`
	Fleet          string                `json:"fleet"`
	Protocol       string                `json:"protocol"`
	Stream         int64                 `json:"stream"`
	Peer           string                `json:"peer,omitempty"`
	ConnectedSince time.Time             `json:"connected_since"`
	Types          map[string]TypeStatus `json:"types"`
	LastNACK       *NACK                 `json:"last_nack,omitempty"`
}

// TypeStatus is one resource type of a stream: the version last sent and last ACKed.
type TypeStatus struct {
	Sent    string     `json:"sent"`
	SentAt  *time.Time `json:"sent_at,omitempty"`
	Acked   string     `json:"acked"`
	AckedAt *time.Time `json:"acked_at,omitempty"`
}

func (t *tracker) nodes() []NodeStatus {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]NodeStatus, 0, len(t.streams))
	for _, st := range t.streams {
		if ns, ok := st.status(); ok {
			out = append(out, ns)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Fleet != b.Fleet {
			return a.Fleet < b.Fleet
		}
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		if a.Protocol != b.Protocol {
			return a.Protocol < b.Protocol
		}
		return a.Stream < b.Stream
	})
	return out
}

// status is the stream as /status shows it (false until it is identified).
func (st *streamState) status() (NodeStatus, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.identified {
		return NodeStatus{}, false
	}
	ns := NodeStatus{
		Node: st.node, Fleet: st.fleet, Protocol: protocol(st.key), Stream: st.key.id,
		Peer: st.peer, ConnectedSince: st.since, Types: map[string]TypeStatus{},
	}
	if st.lastNACK != nil {
		n := *st.lastNACK
		ns.LastNACK = &n
	}
	for typeURL, ts := range st.types {
		out := TypeStatus{Sent: ts.sentVersion, Acked: ts.ackedVersion}
		if !ts.sentAt.IsZero() {
			at := ts.sentAt
			out.SentAt = &at
		}
		if !ts.ackedAt.IsZero() {
			at := ts.ackedAt
			out.AckedAt = &at
		}
		ns.Types[TypeName(typeURL)] = out
	}
	return ns, true
}

func protocol(k streamKey) string {
	if k.delta {
		return "delta"
	}
	return "sotw"
}

func streamName(k streamKey) string {
	return protocol(k) + "/" + itoa(k.id)
}
