// Package xdsserver serves translated fleet snapshots to Envoy over ADS, both
// state-of-the-world (ordered) and delta, and tracks what every connected node was sent,
// acknowledged and rejected.
//
// The ADS streams are served here rather than by go-control-plane's server: that server
// builds and marshals a fresh response for every stream (and, for delta, hashes every
// resource again per stream), so a change cost each connected Envoy a copy of the whole
// configuration. Here each version of each type is encoded once when it is applied
// (typeVersion) and every stream sends those same bytes; only the nonce is per stream.
package xdsserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/scopegate/scopegate/controlplane/translate"

	"github.com/scopegate/scopegate/internal/grpcstop"
)

// Options tune the server; zero values take the defaults below.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer

	// KeepaliveTime is how long a connection may be idle before the server pings it, and
	// KeepaliveTimeout how long it waits for the answer.
	KeepaliveTime    time.Duration
	KeepaliveTimeout time.Duration
	// MaxConnectionAge closes connections after this long (with a GOAWAY, then
	// MaxConnectionAgeGrace for open streams), so Envoys rebalance across replicas.
	MaxConnectionAge      time.Duration
	MaxConnectionAgeGrace time.Duration
	// TLS, when set, serves ADS over TLS (a config whose GetConfigForClient follows rotated
	// files, and which requires client certificates when ADS is mutual TLS).
	TLS *tls.Config
	// Creds, when set, are used instead of TLS (certreload's, which count and log refused
	// handshakes).
	Creds credentials.TransportCredentials
	// TrustDomain, when set, binds each stream to its client certificate: the certificate's
	// URI SAN must be spiffe://<TrustDomain>/fleet/<node.cluster>, or PermissionDenied.
	TrustDomain string
	// WarmTimeout bounds how long Apply waits for connected nodes to receive the endpoints
	// of newly added clusters before it pushes the listeners and routes that use them.
	WarmTimeout time.Duration
}

// Defaults for Options.
const (
	DefaultKeepaliveTime         = 30 * time.Second
	DefaultKeepaliveTimeout      = 10 * time.Second
	DefaultMaxConnectionAge      = 30 * time.Minute
	DefaultMaxConnectionAgeGrace = time.Minute
	DefaultWarmTimeout           = 5 * time.Second

	// MaxStreamsPerConnection bounds the streams one connection (one Envoy) may open.
	MaxStreamsPerConnection = 128
	writeBufferSize         = 64 << 10
	readBufferSize          = 8 << 10
)

// Server is the ADS server with one snapshot per fleet.
type Server struct {
	log     *slog.Logger
	tracker *tracker
	grpc    *grpc.Server
	streams *grpcstop.Streams // ADS streams end with UNAVAILABLE at shutdown
	names   *interner

	// ctx ends every open stream: GracefulStop waits for open ADS streams, so Shutdown
	// cancels it first.
	ctx    context.Context
	cancel context.CancelFunc

	warmTimeout time.Duration

	// SotW and delta streams are numbered separately (as go-control-plane did: the IDs in
	// /status keep their meaning).
	sotwIDs, deltaIDs atomic.Int64

	mu sync.Mutex // serialises Apply

	// byName holds every fleet ever configured: a fleet removed from the config keeps
	// serving the nodes still connected to it.
	fleetsMu sync.RWMutex
	byName   map[string]*fleet

	fleets atomic.Pointer[map[string]FleetStatus]
}

// FleetStatus is a configured fleet's current snapshot versions.
type FleetStatus struct {
	Name      string            `json:"name"`
	Versions  map[string]string `json:"versions"`
	AppliedAt time.Time         `json:"applied_at"`
}

// New builds the server; Serve starts it.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	orDefault := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	orDefault(&opts.KeepaliveTime, DefaultKeepaliveTime)
	orDefault(&opts.KeepaliveTimeout, DefaultKeepaliveTimeout)
	orDefault(&opts.MaxConnectionAge, DefaultMaxConnectionAge)
	orDefault(&opts.MaxConnectionAgeGrace, DefaultMaxConnectionAgeGrace)
	orDefault(&opts.WarmTimeout, DefaultWarmTimeout)

	s := &Server{log: opts.Logger, warmTimeout: opts.WarmTimeout, names: newInterner(), byName: map[string]*fleet{}}
	empty := map[string]FleetStatus{}
	s.fleets.Store(&empty)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.streams = grpcstop.NewStreams()
	s.tracker = newTracker(opts.Logger, newMetrics(opts.Registerer), s.known)
	s.tracker.trustDomain = opts.TrustDomain

	var serverOpts []grpc.ServerOption
	switch {
	case opts.Creds != nil:
		serverOpts = append(serverOpts, grpc.Creds(opts.Creds))
	case opts.TLS != nil:
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	s.grpc = grpc.NewServer(append(serverOpts,
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  opts.KeepaliveTime,
			Timeout:               opts.KeepaliveTimeout,
			MaxConnectionAge:      opts.MaxConnectionAge,
			MaxConnectionAgeGrace: opts.MaxConnectionAgeGrace,
		}),
		// Envoy pings idle xDS connections (connection_keepalive in its bootstrap).
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// An Envoy opens one ADS stream (five without ADS, and one per SDS secret at most).
		grpc.MaxConcurrentStreams(MaxStreamsPerConnection),
		// Responses are bytes made once per version (see wire.go).
		grpc.ForceServerCodecV2(newCodec()),
		// Per connection: the write buffer (taken from a pool while writing, gRPC's default)
		// is large enough that a response goes out in few system calls; the read buffer
		// only ever holds requests, which are small.
		grpc.WriteBufferSize(writeBufferSize),
		grpc.ReadBufferSize(readBufferSize),
		grpc.StreamInterceptor(s.streams.Interceptor()),
	)...)
	discovery.RegisterAggregatedDiscoveryServiceServer(s.grpc, adsService{s})
	// The per-type services too, for Envoys configured without ADS (each still keyed by fleet).
	clusterservice.RegisterClusterDiscoveryServiceServer(s.grpc, cdsService{s})
	endpointservice.RegisterEndpointDiscoveryServiceServer(s.grpc, edsService{s})
	listenerservice.RegisterListenerDiscoveryServiceServer(s.grpc, ldsService{s})
	routeservice.RegisterRouteDiscoveryServiceServer(s.grpc, rdsService{s})
	secretservice.RegisterSecretDiscoveryServiceServer(s.grpc, sdsService{s})
	return s
}

// Serve accepts ADS connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.grpc.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// Shutdown ends every stream and stops the server: it cancels the xDS context (without
// which GracefulStop would wait on open ADS streams for ever), then stops gracefully, or
// forcibly once ctx is done.
func (s *Server) Shutdown(ctx context.Context) {
	s.streams.Stop() // first: every stream, ADS or not, then reports UNAVAILABLE
	s.cancel()
	grpcstop.Graceful(ctx, s.grpc, s.streams)
}

// Apply installs the fleets' snapshots: every connected node of a fleet receives the types
// whose version changed, and nothing else. A fleet missing from fleets stops accepting new
// nodes; its connected nodes keep the configuration they have.
//
// Each type whose version changed is encoded here, once: every stream sends those bytes.
func (s *Server) Apply(ctx context.Context, fleets map[string]*translate.Fleet) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	next := make(map[string]FleetStatus, len(fleets))
	snaps := make(map[string]*fleetSnapshot, len(fleets))
	names := make([]string, 0, len(fleets))
	for name := range fleets {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f := fleets[name]
		if f.Encoded == nil || f.Versions == nil {
			return fmt.Errorf("fleet %q: not encoded (build fleets with translate.Build)", name)
		}
		var cur *fleetSnapshot
		if obj := s.fleetNamed(name); obj != nil {
			cur = obj.snap.Load()
		}
		snaps[name] = nextSnapshot(cur, f)
		versions := make(map[string]string, len(f.Versions))
		for typ, v := range f.Versions {
			versions[TypeName(typ)] = v
		}
		next[name] = FleetStatus{Name: name, Versions: versions, AppliedAt: now}
	}
	prev := *s.fleets.Load()
	changed := make(map[string]bool, len(names))
	for _, name := range names {
		if old, ok := prev[name]; ok && maps.Equal(old.Versions, next[name].Versions) {
			st := next[name]
			st.AppliedAt = old.AppliedAt
			next[name] = st
			continue
		}
		changed[name] = true
	}
	// A new fleet gets its snapshot before it is published: a node is admitted only once
	// its fleet is published, and then finds its configuration.
	s.fleetsMu.Lock()
	for _, name := range names {
		if _, ok := s.byName[name]; !ok {
			f := newFleet(name)
			f.snap.Store(snaps[name])
			s.byName[name] = f
			changed[name] = false
		}
	}
	s.fleetsMu.Unlock()
	s.fleets.Store(&next)
	for _, name := range names {
		if !changed[name] {
			continue
		}
		f := s.fleetNamed(name)
		if prevSnap := f.snap.Load(); prevSnap != nil {
			if err := s.warmClusters(ctx, f, prevSnap, snaps[name]); err != nil {
				return err
			}
		}
		f.set(snaps[name])
	}
	for name := range prev {
		if _, ok := next[name]; !ok {
			s.log.Warn("fleet removed from config: its connected nodes keep their last configuration, new nodes are refused", "fleet", name)
		}
	}
	return nil
}

func (s *Server) fleetNamed(name string) *fleet {
	s.fleetsMu.RLock()
	defer s.fleetsMu.RUnlock()
	return s.byName[name]
}

// warmClusters keeps the xDS ordering promise when a change adds clusters with EDS
// endpoints. Over SotW ADS an endpoints request is answered only once it names every
// endpoint set, so new endpoints go out only after each Envoy, having received the new
// clusters, asks for them; listeners and routes would overtake them and point at clusters
// still warming. So first the new clusters and endpoints are pushed with the old listeners,
// routes and secrets, and the full snapshot follows once every connected node of the fleet
// has answered the new endpoints (or WarmTimeout passes).
func (s *Server) warmClusters(ctx context.Context, f *fleet, prev, next *fleetSnapshot) error {
	const cds, eds = 0, 1
	added := false
	for _, name := range next[eds].names {
		if !prev[eds].has(name) {
			added = true
			break
		}
	}
	if !added {
		return nil
	}
	warm := *prev
	warm[cds], warm[eds] = next[cds], next[eds]
	f.set(&warm)
	wctx, cancel := context.WithTimeout(ctx, s.warmTimeout)
	defer cancel()
	if err := s.tracker.waitAnswered(wctx, f.name, resource.EndpointType, next[eds].version); err != nil {
		s.log.Warn("pushing listeners and routes before every node has the new endpoints", "fleet", f.name, "error", err)
	}
	return nil
}

func (s *Server) known(fleet string) bool {
	_, ok := (*s.fleets.Load())[fleet]
	return ok
}

// Fleets returns the configured fleets and their snapshot versions, by name.
func (s *Server) Fleets() []FleetStatus {
	m := *s.fleets.Load()
	out := make([]FleetStatus, 0, len(m))
	for _, f := range m {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Nodes returns every connected, identified stream.
func (s *Server) Nodes() []NodeStatus { return s.tracker.nodes() }

// ResourceTypes lists the type URLs served, in push order.
func ResourceTypes() []string {
	return []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.SecretType}
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }
