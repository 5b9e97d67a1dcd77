package xdsserver

import (
	"context"
	"errors"
	"io"
	"sync"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// maxUnknownNames bounds, per stream and type, the names subscribed to (or declared held in
// initial_resource_versions) beyond the resources the fleet has: what one client can make
// the server keep is bounded by the config, not by the client.
const maxUnknownNames = 1024

// An ADS stream runs on two goroutines: gRPC's handler goroutine sends (woken by a request
// or a fleet change, it sends whatever is due, in push order), and a receiving goroutine
// reads requests and updates the stream's state. Nothing else runs per stream: a change
// wakes each stream of the fleet, and each sends the typeVersion's shared bytes.
//
// Per connected Envoy the server keeps: these two goroutines, the stream's state (a few
// pointers and strings per type: name sets are interned, held versions are a pointer to a
// shared typeVersion), its tracker entry, and gRPC's own per-stream and per-connection
// state. No response is kept after it is written: the bytes belong to the typeVersion.
type streamBase struct {
	srv     *Server
	key     streamKey
	gs      grpc.ServerStream
	typeURL string // the one type a non-ADS stream serves; "" for ADS
	wakeCh  chan struct{}
	tracked *streamState // the tracker's record of the stream

	mu     sync.Mutex
	fleet  *fleet
	closed bool
	nonce  uint64
}

func (s *Server) newStreamBase(gs grpc.ServerStream, typeURL string, delta bool) streamBase {
	id := s.sotwIDs.Add(1)
	if delta {
		id = s.deltaIDs.Add(1)
	}
	return streamBase{srv: s, key: streamKey{delta: delta, id: id}, gs: gs, typeURL: typeURL, wakeCh: make(chan struct{}, 1)}
}

func (b *streamBase) wake() {
	select {
	case b.wakeCh <- struct{}{}:
	default:
	}
}

// requestType checks a request's type URL, filling in a non-ADS stream's own.
func (b *streamBase) requestType(typeURL *string) error {
	switch {
	case b.typeURL == "" && *typeURL == "":
		return status.Error(codes.InvalidArgument, "type URL is required for ADS")
	case b.typeURL == "":
	case *typeURL == "":
		*typeURL = b.typeURL
	case *typeURL != b.typeURL:
		return status.Errorf(codes.InvalidArgument, "a %s stream cannot ask for %s", TypeName(b.typeURL), *typeURL)
	}
	return nil
}

// receive reads requests and hands each to handle until the stream ends or handle refuses
// one.
func receive[T any, PT interface {
	*T
	proto.Message
}](gs grpc.ServerStream, handle func(PT) error) error {
	for {
		req := PT(new(T))
		if err := gs.RecvMsg(req); err != nil {
			return recvEnded(err)
		}
		if err := handle(req); err != nil {
			return err
		}
	}
}

// lockRequest is the start of every request: its type URL checked (filled in on a
// non-ADS stream), track run (the tracker's part), the stream bound to its fleet. It
// returns the type's index (-1: a type not served) with the stream's lock held, unless it
// fails.
func (b *streamBase) lockRequest(typeURL *string, node *core.Node, track func() error) (int, error) {
	if err := b.requestType(typeURL); err != nil {
		return -1, err
	}
	if err := track(); err != nil {
		return -1, err
	}
	b.mu.Lock()
	if err := b.bindLocked(node); err != nil {
		b.mu.Unlock()
		return -1, err
	}
	return typeIndex(*typeURL), nil
}

// bindLocked joins the stream to its node's fleet on the first request (the tracker has
// admitted the node by then), so fleet changes wake it.
func (b *streamBase) bindLocked(node *core.Node) error {
	if b.fleet != nil {
		return nil
	}
	if b.closed {
		return status.Error(codes.Canceled, "stream closed")
	}
	f := b.srv.fleetNamed(node.GetCluster())
	if f == nil {
		return status.Errorf(codes.FailedPrecondition, "fleet %q has no configuration yet", node.GetCluster())
	}
	b.fleet = f
	f.add(b)
	return nil
}

func (b *streamBase) snapshotLocked() *fleetSnapshot {
	if b.fleet == nil {
		return nil
	}
	return b.fleet.snap.Load()
}

// maxNamesLocked is how many names a subscription to type i may hold.
func (b *streamBase) maxNamesLocked(i int) int {
	if snap := b.snapshotLocked(); snap != nil && snap[i] != nil {
		return len(snap[i].names) + maxUnknownNames
	}
	return maxUnknownNames
}

func (b *streamBase) nextNonceLocked() string {
	b.nonce++
	return nonceString(b.nonce)
}

// streamHandler is what differs between state-of-the-world and delta streams.
type streamHandler interface {
	// receive reads and handles requests until the stream ends.
	receive() error
	// flush sends every response due.
	flush() error
	// release drops what the stream holds (name sets) once it has ended.
	release()
}

// serve runs one stream until the client ends it, a request is refused, or the server
// shuts down.
func (s *Server) serve(b *streamBase, p streamHandler) error {
	b.tracked = s.tracker.open(b.gs.Context(), b.key)
	defer s.tracker.closed(b.key)
	defer func() {
		b.mu.Lock()
		b.closed = true
		f := b.fleet
		b.mu.Unlock()
		if f != nil {
			f.remove(b)
		}
		p.release()
	}()
	received := make(chan error, 1)
	go func() { received <- p.receive() }()
	for {
		select {
		case <-b.wakeCh:
			if err := p.flush(); err != nil {
				return err
			}
		case err := <-received:
			return err
		case <-s.ctx.Done():
			return s.shutdownStatus()
		}
	}
}

// shutdownStatus is how an open stream ends when the server shuts down: Shutdown cancels the
// server's context, every stream's handler returns this, and GracefulStop can complete.
// UNAVAILABLE is the status Envoy reconnects on (to another replica, or to this one restarted).
func (s *Server) shutdownStatus() error {
	return status.Error(codes.Unavailable, "the xDS server is shutting down")
}

// recvEnded maps the end of a stream's requests to the handler's result: the client
// closing its side ends the stream cleanly; anything else (a cancelled stream, a request
// over the size limit) is passed on.
func recvEnded(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

var errFetch = status.Error(codes.Unimplemented, "REST fetch is not served: use ADS")

// ADS, and the per-type services for Envoys configured without ADS (each still keyed by
// fleet, each stream serving its one type).
type (
	adsService struct{ s *Server }
	cdsService struct{ s *Server }
	edsService struct{ s *Server }
	ldsService struct{ s *Server }
	rdsService struct{ s *Server }
	sdsService struct{ s *Server }

	sotwServer  = grpc.BidiStreamingServer[discovery.DiscoveryRequest, discovery.DiscoveryResponse]
	deltaServer = grpc.BidiStreamingServer[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]
)

func (a adsService) StreamAggregatedResources(st sotwServer) error { return a.s.serveSotW(st, "") }
func (a adsService) DeltaAggregatedResources(st deltaServer) error { return a.s.serveDelta(st, "") }

func (a cdsService) StreamClusters(st sotwServer) error {
	return a.s.serveSotW(st, resource.ClusterType)
}
func (a cdsService) DeltaClusters(st deltaServer) error {
	return a.s.serveDelta(st, resource.ClusterType)
}
func (cdsService) FetchClusters(context.Context, *discovery.DiscoveryRequest) (*discovery.DiscoveryResponse, error) {
	return nil, errFetch
}

func (a edsService) StreamEndpoints(st sotwServer) error {
	return a.s.serveSotW(st, resource.EndpointType)
}
func (a edsService) DeltaEndpoints(st deltaServer) error {
	return a.s.serveDelta(st, resource.EndpointType)
}
func (edsService) FetchEndpoints(context.Context, *discovery.DiscoveryRequest) (*discovery.DiscoveryResponse, error) {
	return nil, errFetch
}

func (a ldsService) StreamListeners(st sotwServer) error {
	return a.s.serveSotW(st, resource.ListenerType)
}
func (a ldsService) DeltaListeners(st deltaServer) error {
	return a.s.serveDelta(st, resource.ListenerType)
}
func (ldsService) FetchListeners(context.Context, *discovery.DiscoveryRequest) (*discovery.DiscoveryResponse, error) {
	return nil, errFetch
}

func (a rdsService) StreamRoutes(st sotwServer) error { return a.s.serveSotW(st, resource.RouteType) }
func (a rdsService) DeltaRoutes(st deltaServer) error { return a.s.serveDelta(st, resource.RouteType) }
func (rdsService) FetchRoutes(context.Context, *discovery.DiscoveryRequest) (*discovery.DiscoveryResponse, error) {
	return nil, errFetch
}

func (a sdsService) StreamSecrets(st sotwServer) error {
	return a.s.serveSotW(st, resource.SecretType)
}
func (a sdsService) DeltaSecrets(st deltaServer) error {
	return a.s.serveDelta(st, resource.SecretType)
}
func (sdsService) FetchSecrets(context.Context, *discovery.DiscoveryRequest) (*discovery.DiscoveryResponse, error) {
	return nil, errFetch
}
