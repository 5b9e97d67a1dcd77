// Package xdsserver serves translated fleet snapshots to Envoy over ADS, both
// state-of-the-world (ordered) and delta, and tracks what every connected node was sent,
// acknowledged and rejected.
package xdsserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	xds "github.com/envoyproxy/go-control-plane/pkg/server/v3"
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
)

// Server is the ADS server with one snapshot per fleet.
type Server struct {
	log     *slog.Logger
	cache   cache.SnapshotCache
	tracker *tracker
	grpc    *grpc.Server
	streams *grpcstop.Streams // ADS streams end with UNAVAILABLE at shutdown

	// ctx is given to go-control-plane's server: GracefulStop waits for open ADS streams
	// until it is cancelled, so Shutdown cancels it first.
	ctx    context.Context
	cancel context.CancelFunc

	warmTimeout time.Duration

	mu     sync.Mutex // serialises Apply; guards snaps
	snaps  map[string]*cache.Snapshot
	fleets atomic.Pointer[map[string]FleetStatus]
}

// FleetStatus is a configured fleet's current snapshot versions.
type FleetStatus struct {
	Name      string            `json:"name"`
	Versions  map[string]string `json:"versions"`
	AppliedAt time.Time         `json:"applied_at"`
}

// FleetHash keys snapshots by the Envoy node's cluster (its fleet), not its ID: every node
// of a fleet shares one snapshot.
type FleetHash struct{}

// ID implements cache.NodeHash.
func (FleetHash) ID(node *core.Node) string { return node.GetCluster() }

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

	s := &Server{log: opts.Logger, warmTimeout: opts.WarmTimeout, snaps: map[string]*cache.Snapshot{}}
	empty := map[string]FleetStatus{}
	s.fleets.Store(&empty)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.streams = grpcstop.NewStreams()
	gcpLog := logAdapter{opts.Logger.With("component", "go-control-plane")}
	s.cache = cache.NewSnapshotCache(true, FleetHash{}, gcpLog)
	s.tracker = newTracker(opts.Logger, newMetrics(opts.Registerer), s.known)
	s.tracker.trustDomain = opts.TrustDomain

	callbacks := xds.CallbackFuncs{
		StreamOpenFunc: func(ctx context.Context, id int64, _ string) error {
			s.tracker.open(ctx, streamKey{id: id})
			return nil
		},
		StreamClosedFunc:  func(id int64, _ *core.Node) { s.tracker.closed(streamKey{id: id}) },
		StreamRequestFunc: s.tracker.request,
		StreamResponseFunc: func(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
			s.tracker.response(id, resp)
		},
		DeltaStreamOpenFunc: func(ctx context.Context, id int64, _ string) error {
			s.tracker.open(ctx, streamKey{delta: true, id: id})
			return nil
		},
		DeltaStreamClosedFunc:  func(id int64, _ *core.Node) { s.tracker.closed(streamKey{delta: true, id: id}) },
		StreamDeltaRequestFunc: s.tracker.deltaRequest,
		StreamDeltaResponseFunc: func(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
			s.tracker.deltaResponse(id, resp)
		},
		FetchRequestFunc: func(context.Context, *discovery.DiscoveryRequest) error {
			return errors.New("REST fetch is not served: use ADS")
		},
	}
	srv := xds.NewServer(s.ctx, s.cache, callbacks, sotw.WithOrderedADS(), sotw.WithLogger(gcpLog))

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
		grpc.MaxConcurrentStreams(1<<20),
		grpc.StreamInterceptor(s.streams.Interceptor()),
	)...)
	discovery.RegisterAggregatedDiscoveryServiceServer(s.grpc, srv)
	// The per-type services too, for Envoys configured without ADS (each still keyed by fleet).
	clusterservice.RegisterClusterDiscoveryServiceServer(s.grpc, srv)
	endpointservice.RegisterEndpointDiscoveryServiceServer(s.grpc, srv)
	listenerservice.RegisterListenerDiscoveryServiceServer(s.grpc, srv)
	routeservice.RegisterRouteDiscoveryServiceServer(s.grpc, srv)
	secretservice.RegisterSecretDiscoveryServiceServer(s.grpc, srv)
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
	s.streams.Stop() // first: a stream go-control-plane ends below reports UNAVAILABLE, not OK
	s.cancel()
	grpcstop.Graceful(ctx, s.grpc, s.streams)
}

// Apply installs the fleets' snapshots: every connected node of a fleet receives the types
// whose version changed, and nothing else. A fleet missing from fleets stops accepting new
// nodes; its connected nodes keep the configuration they have.
func (s *Server) Apply(ctx context.Context, fleets map[string]*translate.Fleet) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	next := make(map[string]FleetStatus, len(fleets))
	snaps := make(map[string]*cache.Snapshot, len(fleets))
	names := make([]string, 0, len(fleets))
	for name := range fleets {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f := fleets[name]
		snap, err := f.Snapshot()
		if err != nil {
			return fmt.Errorf("fleet %q: %w", name, err)
		}
		if err := snap.Consistent(); err != nil {
			return fmt.Errorf("fleet %q: %w", name, err)
		}
		snaps[name] = snap
		versions := make(map[string]string, len(f.Versions))
		for typ, v := range f.Versions {
			versions[TypeName(typ)] = v
		}
		next[name] = FleetStatus{Name: name, Versions: versions, AppliedAt: now}
	}
	prev := *s.fleets.Load()
	changed := make(map[string]bool, len(names))
	for _, name := range names {
		if old, ok := prev[name]; ok && sameVersions(old.Versions, next[name].Versions) {
			st := next[name]
			st.AppliedAt = old.AppliedAt
			next[name] = st
			continue
		}
		changed[name] = true
	}
	// Publish the fleet set first, so nodes of a new fleet are accepted as soon as their
	// snapshot exists (a node arriving in between waits for it: the cache holds its watch).
	s.fleets.Store(&next)
	for _, name := range names {
		if !changed[name] {
			continue
		}
		if prevSnap := s.snaps[name]; prevSnap != nil {
			if err := s.warmClusters(ctx, name, prevSnap, snaps[name]); err != nil {
				return err
			}
		}
		if err := s.cache.SetSnapshot(ctx, name, snaps[name]); err != nil {
			return fmt.Errorf("fleet %q: %w", name, err)
		}
		s.snaps[name] = snaps[name]
	}
	for name := range prev {
		if _, ok := next[name]; !ok {
			s.log.Warn("fleet removed from config: its connected nodes keep their last configuration, new nodes are refused", "fleet", name)
		}
	}
	return nil
}

// warmClusters keeps the xDS ordering promise when a change adds clusters with EDS
// endpoints. Over SotW ADS the cache answers an endpoints request only once it names every
// endpoint set, so new endpoints go out only after each Envoy, having received the new
// clusters, asks for them; listeners and routes would overtake them and point at clusters
// still warming. So first the new clusters and endpoints are pushed with the old listeners,
// routes and secrets, and the full snapshot follows once every connected node of the fleet
// has answered the new endpoints (or WarmTimeout passes).
func (s *Server) warmClusters(ctx context.Context, fleet string, prev, next *cache.Snapshot) error {
	eds := func(sn *cache.Snapshot) map[string]types.ResourceWithTTL { return sn.Resources[types.Endpoint].Items }
	added := false
	for name := range eds(next) {
		if _, ok := eds(prev)[name]; !ok {
			added = true
			break
		}
	}
	if !added {
		return nil
	}
	warm := &cache.Snapshot{}
	warm.Resources = prev.Resources
	warm.Resources[types.Cluster] = next.Resources[types.Cluster]
	warm.Resources[types.Endpoint] = next.Resources[types.Endpoint]
	if err := warm.Consistent(); err != nil {
		return fmt.Errorf("fleet %q: warm-up snapshot: %w", fleet, err)
	}
	if err := s.cache.SetSnapshot(ctx, fleet, warm); err != nil {
		return fmt.Errorf("fleet %q: %w", fleet, err)
	}
	wctx, cancel := context.WithTimeout(ctx, s.warmTimeout)
	defer cancel()
	if err := s.tracker.waitAnswered(wctx, fleet, resource.EndpointType, next.GetVersion(resource.EndpointType)); err != nil {
		s.log.Warn("pushing listeners and routes before every node has the new endpoints", "fleet", fleet, "error", err)
	}
	return nil
}

func sameVersions(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
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

// logAdapter sends go-control-plane's logs to slog. Its Info lines are per-request chatter,
// so they go to debug.
type logAdapter struct{ l *slog.Logger }

func (a logAdapter) Debugf(format string, args ...any) { a.l.Debug(fmt.Sprintf(format, args...)) }
func (a logAdapter) Infof(format string, args ...any)  { a.l.Debug(fmt.Sprintf(format, args...)) }
func (a logAdapter) Warnf(format string, args ...any)  { a.l.Warn(fmt.Sprintf(format, args...)) }
func (a logAdapter) Errorf(format string, args ...any) { a.l.Error(fmt.Sprintf(format, args...)) }
