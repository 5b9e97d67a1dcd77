// Package server runs scopegate authz: the ext_authz gRPC service with gRPC health, and the
// admin HTTP server, built from a config and stopped gracefully.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/decisionlog"
	"github.com/scopegate/scopegate/extauthz/introspect"
	"github.com/scopegate/scopegate/extauthz/jwks"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/policy/remote"
	"github.com/scopegate/scopegate/extauthz/routes"
	"github.com/scopegate/scopegate/extauthz/sharedstate"
	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/admin"
	"github.com/scopegate/scopegate/internal/certreload"
	"github.com/scopegate/scopegate/internal/drain"
	"github.com/scopegate/scopegate/internal/grpcstop"
	"github.com/scopegate/scopegate/internal/tracing"
	"github.com/scopegate/scopegate/policies"
)

// Server is a running authz service.
type Server struct {
	cfg     *config.Config
	log     *slog.Logger
	grpc    *grpc.Server
	streams *grpcstop.Streams // ends health Watch streams at shutdown
	health  *health.Server
	admin   *admin.Server
	lis     net.Listener
	sources []*jwks.Source
	// introspectors are the introspecting issuers' clients (readiness: endpoint known).
	introspectors []*introspect.Client
	engine        *policy.Engine
	dlog          *decisionlog.Logger
	dlogFile      io.Closer
	Service       *check.Service
	Registry      *prometheus.Registry
	// GRPCTLS and AdminTLS serve the certificates of the tls and admin_tls blocks (nil
	// without them).
	GRPCTLS, AdminTLS *certreload.Reloader
	bundle            *remote.Source     // nil unless policy.bundle is set
	shared            *sharedstate.Store // nil unless shared_state is set
	routes            *routeTable
	// RoutesReloaded, when set before Start, is called after each routes_file reload
	// attempt (tests synchronise on it).
	RoutesReloaded func()
	tracing        *tracing.Provider
	cancel         context.CancelFunc
	bg             context.Context // ends at Shutdown
	wg             sync.WaitGroup

	shutdownOnce sync.Once
	shutdownErr  error
}

// Handler is the Check service built from a config, with its issuers' key sources,
// introspection clients and policy, but no listeners: `scopegate authz` serves it, and
// `scopegate check --config` asks it in-process, so both decide the same way.
type Handler struct {
	Service       *check.Service
	Verifier      *token.Verifier
	Engine        *policy.Engine
	Sources       []*jwks.Source
	Introspectors []*introspect.Client
	Bundle        *remote.Source // nil unless policy.bundle is set
	// SharedState is the store of shared_state (nil without it).
	SharedState *sharedstate.Store
	// Routes is the route table in force (mesh mode), nil without routes_file or routes.
	Routes *routes.Live
}

// HandlerOptions are what NewHandler takes besides the config; every field may be nil.
type HandlerOptions struct {
	Logger      *slog.Logger
	Registry    *prometheus.Registry // nil: metrics are kept in a registry nobody reads
	DecisionLog *decisionlog.Logger
	Tracer      trace.Tracer // nil: no spans
}

// NewHandler builds the key sources and introspection clients (not started: see Start), the
// verifier with its cache, the policy engine and the Check service from cfg.
func NewHandler(ctx context.Context, cfg *config.Config, o HandlerOptions) (*Handler, error) {
	log, reg, tracer := o.Logger, o.Registry, o.Tracer
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if tracer == nil {
		tracer = noop.NewTracerProvider().Tracer("")
	}
	h := &Handler{}
	var err error
	if h.SharedState, err = SharedState(cfg, log, reg); err != nil {
		return nil, err
	}
	jm := jwks.NewMetrics(reg)
	im := introspect.NewMetrics(reg)
	var issuers []token.Issuer
	for i := range cfg.Issuers {
		ic := &cfg.Issuers[i]
		is := tokenIssuer(ic)
		if ic.HasKeys() {
			src, err := jwks.New(jwks.Options{
				Name: ic.Name, Issuer: ic.Issuer, Discovery: ic.Discovery, URL: ic.JWKSURI, File: ic.JWKSFile,
				RefreshInterval: ic.RefreshInterval, UnknownKIDInterval: ic.UnknownKIDInterval,
				FetchTimeout: ic.FetchTimeout, MaxBytes: ic.MaxJWKSBytes, Logger: log, Metrics: jm, Tracer: tracer,
			})
			if err != nil {
				return nil, fmt.Errorf("issuer %s: %w", ic.Name, err)
			}
			h.Sources = append(h.Sources, src)
			is.Keys = src
		}
		if in := ic.Introspection; in != nil {
			c, err := introspect.New(introspect.Options{Name: ic.Name, Issuer: ic.Issuer, Endpoint: in.Endpoint,
				Discovery: ic.Discovery && in.Endpoint == "", ClientID: in.ClientID, ClientSecret: in.ClientSecret, ClientKey: in.ClientKey, KeyID: in.KeyID, JWTResponse: in.JWTResponse,
				Timeout: ic.FetchTimeout, MaxConcurrent: in.MaxConcurrent, Metrics: im, Logger: log, Shared: sharedAnswers(h.SharedState), CacheTTL: in.CacheTTL, NegativeCacheTTL: in.NegativeCacheTTL})
			if err != nil {
				return nil, fmt.Errorf("issuer %s: %w", ic.Name, err)
			}
			h.Introspectors = append(h.Introspectors, c)
			is.Introspect = c
		}
		issuers = append(issuers, is)
	}
	tm := token.NewMetrics(reg)
	cache := token.NewCacheSized(*cfg.TokenCache.MaxEntries, *cfg.TokenCache.MaxNegativeEntries)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "scopegate_token_cache_size", Help: "Entries in the verified-token cache.",
	}, func() float64 { return float64(cache.Len()) }), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "scopegate_token_cache_negative_size", Help: "Refusals (introspected tokens answered inactive or refused) kept apart from the verified tokens.",
	}, func() float64 { return float64(cache.NegativeLen()) }))
	h.Verifier = token.NewVerifier(token.Options{Issuers: issuers, Cache: cache, Metrics: tm, Logger: log})

	verification, err := policy.Verification(PolicySigning(cfg.Policy.Signing, "policy.signing.public_key_file"))
	if err != nil {
		return nil, err
	}
	popts := policy.Options{
		Path: cfg.Policy.Path, FS: policies.Default, Query: cfg.Policy.Query, RunTests: *cfg.Policy.RunTests,
		Verification: verification, EvalTimeout: cfg.Policy.EvalTimeout, Logger: log, Metrics: policy.NewMetrics(reg),
	}
	if cfg.Policy.Bundle != nil {
		// The policy arrives from the bundle server (or the persisted copy); until then
		// Checks are denied with 503 and readiness waits.
		popts.FS = nil
		h.Engine = policy.NewPending(popts)
		h.Bundle, err = remote.New(ctx, remote.Options{Bundle: policyBundle(cfg.Policy.Bundle), Engine: h.Engine, Logger: log})
	} else {
		h.Engine, err = policy.New(ctx, popts)
	}
	if err != nil {
		return nil, err
	}
	proofs, err := DPoPVerifier(cfg, log, h.SharedState)
	if err != nil {
		return nil, err
	}
	table, err := cfg.RouteTable()
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	if table != nil {
		h.Routes = routes.NewLive(table)
	}
	h.Service = check.New(check.Options{
		Verifier: h.Verifier, Policy: h.Engine, Headers: CheckHeaders(cfg.Headers), MaxTokenBytes: cfg.Bearer.MaxTokenBytes,
		Shadow: cfg.Policy.Shadow, ErrorStatus: cfg.Policy.ErrorStatus, DecisionLog: o.DecisionLog, Logger: log,
		Metrics: check.NewMetrics(reg), DPoP: proofs, ExternalBaseURL: cfg.ExternalBaseURL, Tracer: tracer,
		Routes: h.Routes, DenyUnmatched: cfg.Unmatched == config.UnmatchedDeny,
	})
	return h, nil
}

// Start starts fetching every issuer's keys and introspection metadata (and the policy
// bundle, when one is configured) until ctx ends.
func (h *Handler) Start(ctx context.Context) {
	for _, src := range h.Sources {
		src.Start(ctx)
	}
	for _, c := range h.Introspectors {
		c.Start(ctx)
	}
	if h.Bundle != nil {
		h.Bundle.Start(ctx)
	}
	if h.SharedState != nil {
		h.SharedState.Start(ctx) // connects in the background; closed when ctx ends
	}
}

// New builds everything and binds the listeners; Start serves. A bad policy or a listener
// that can't bind fails here, before anything is served.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Server, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &Server{cfg: cfg, log: log, Registry: reg}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel, s.bg = cancel, bg

	tp, err := tracing.New(ctx, cfg.Tracing, "scopegate-authz")
	if err != nil {
		cancel()
		return nil, err
	}
	s.tracing = tp
	started := false
	defer func() {
		if !started { // a failure below: stop the exporter it started
			_ = tp.Shutdown(context.Background())
		}
	}()
	tracer := tp.Tracer("github.com/scopegate/scopegate/extauthz")

	if err := s.openDecisionLog(); err != nil {
		cancel()
		return nil, err
	}
	h, err := NewHandler(ctx, cfg, HandlerOptions{Logger: log, Registry: reg, DecisionLog: s.dlog, Tracer: tracer})
	if err != nil {
		s.closeDecisionLog()
		cancel()
		return nil, err
	}
	s.sources, s.introspectors, s.engine, s.Service, s.bundle = h.Sources, h.Introspectors, h.Engine, h.Service, h.Bundle
	s.shared = h.SharedState
	s.routes = newRouteTable(cfg, h.Routes, log, reg)
	verifier, engine := h.Verifier, h.Engine

	tlsMetrics := certreload.NewMetrics(reg)
	grpcOpts := []grpc.ServerOption{}
	if cfg.TLS != nil {
		s.GRPCTLS, err = certreload.New(certreload.Options{Files: cfg.TLS.Files, Name: "grpc", Logger: log, Metrics: tlsMetrics,
			VerifyConnection: certreload.AllowURISANs(cfg.TLS.ClientURISANs)})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("tls: %w", err)
		}
		grpcOpts = append(grpcOpts, grpc.Creds(s.GRPCTLS.Credentials())) // counts refused handshakes
	}
	if cfg.AdminTLS != nil {
		s.AdminTLS, err = certreload.New(certreload.Options{Files: *cfg.AdminTLS, Name: "admin", Logger: log, Metrics: tlsMetrics,
			NextProtos: []string{"http/1.1"}})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("admin_tls: %w", err)
		}
	}
	s.lis, err = listen(cfg)
	if err != nil {
		s.closeDecisionLog()
		cancel()
		return nil, err
	}
	s.streams = grpcstop.NewStreams()
	s.grpc = grpc.NewServer(append(grpcOpts,
		grpc.StreamInterceptor(s.streams.Interceptor()), // streams only: Check is unary
		// Reused worker goroutines keep the stacks policy evaluation has grown; a fresh
		// goroutine per request would grow its stack again on every cold token.
		grpc.NumStreamWorkers(uint32(max(64, 8*runtime.GOMAXPROCS(0)))),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)...)
	authv3.RegisterAuthorizationServer(s.grpc, s.Service)
	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	if cfg.GRPCReflection {
		reflection.Register(s.grpc)
	}

	s.admin, err = admin.New(cfg.Admin, reg, s.ready)
	if err != nil {
		s.lis.Close()
		s.closeDecisionLog()
		cancel()
		return nil, err
	}
	if s.AdminTLS != nil {
		s.admin.UseTLS(s.AdminTLS.ServerConfig())
	}
	for _, r := range []*certreload.Reloader{s.GRPCTLS, s.AdminTLS} {
		if r == nil {
			continue
		}
		if err := r.Start(bg); err != nil {
			log.Warn("TLS files not watched: certificate rotation needs a restart", "error", err)
		}
	}

	h.Start(bg)
	s.wg.Go(func() { verifier.Run(bg) })
	if cfg.Policy.Watch {
		if err := engine.Watch(bg, 300*time.Millisecond, nil); err != nil {
			log.Warn("policy watch not started; reload needs a restart", "error", err)
		}
	}
	s.wg.Go(func() { s.trackHealth(bg) })
	started = true
	return s, nil
}

func (s *Server) openDecisionLog() error {
	var w io.Writer
	switch s.cfg.DecisionLog.Output {
	case "off", "none":
		return nil
	case "stdout":
		w = os.Stdout
	case "stderr":
		w = os.Stderr
	default:
		f, err := os.OpenFile(s.cfg.DecisionLog.Output, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("decision_log.output: %w", err)
		}
		w, s.dlogFile = f, f
	}
	s.dlog = decisionlog.New(w, *s.cfg.DecisionLog.SampleRate, 200*time.Millisecond).WithHiddenHeaders(s.cfg.DecisionLog.HiddenHeaders...)
	if *s.cfg.DecisionLog.IncludeInput {
		s.dlog.WithInput().WithInputSampleRate(*s.cfg.DecisionLog.InputSampleRate)
	}
	dlog := s.dlog
	s.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "scopegate_decision_log_dropped_lines_total",
			Help: "Decision log lines dropped because the output fell more than 8 MiB behind."},
			func() float64 { return float64(dlog.Dropped()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "scopegate_decision_log_write_errors_total",
			Help: "Failed writes to the decision log output (their lines are lost)."},
			func() float64 { return float64(dlog.WriteErrors()) }))
	return nil
}

// closeDecisionLog flushes and closes the decision log (a nil log is a no-op).
func (s *Server) closeDecisionLog() error {
	err := s.dlog.Close()
	if s.dlogFile != nil {
		s.dlogFile.Close()
	}
	return err
}

// GRPCAddr and AdminAddr are the bound addresses (useful with port 0); a Unix socket's
// GRPCAddr is its path.
func (s *Server) GRPCAddr() string  { return s.lis.Addr().String() }
func (s *Server) AdminAddr() string { return s.admin.Addr() }

// GRPCTarget is what a gRPC client dials: host:port, or unix:///path.
func (s *Server) GRPCTarget() string {
	if _, ok := s.cfg.SocketPath(); ok {
		return config.UnixPrefix + s.GRPCAddr()
	}
	return s.GRPCAddr()
}

// Ready reports whether every issuer has keys.
func (s *Server) Ready() bool {
	_, err := s.ready()
	return err == nil
}

type readiness struct {
	Issuers map[string]jwks.Status `json:"issuers"`
	Policy  *policy.Revision       `json:"policy"`
	Bundle  *remote.Status         `json:"bundle,omitempty"`
	// SharedState is the store's state. A store outage does not make authz unready: every
	// replica would go at once, and Checks that don't need the store would fail with them.
	SharedState *sharedstate.Status `json:"shared_state,omitempty"`
	Routes      RouteStatus         `json:"routes"`
}

func (s *Server) ready() (any, error) {
	r := readiness{Issuers: map[string]jwks.Status{}, Policy: s.engine.Revision(), Routes: s.routes.Status()}
	if s.shared != nil {
		st := s.shared.Status()
		r.SharedState = &st
	}
	var missing []string
	var problems []string
	if s.bundle != nil {
		st := s.bundle.Status()
		r.Bundle = &st
		if r.Policy == nil {
			problems = append(problems, "policy bundle not loaded yet")
		}
	}
	if err := keysReadiness(s.sources, r.Issuers); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return r, errors.New(strings.Join(problems, "; "))
	}
	for _, c := range s.introspectors {
		if !c.Ready() {
			missing = append(missing, c.Name())
		}
	}
	if len(missing) > 0 {
		return r, fmt.Errorf("introspection endpoint not discovered yet for issuer(s) %v", missing)
	}
	return r, nil
}

// trackHealth turns gRPC health to SERVING once every issuer has keys, so Envoy's health
// checks agree with /readyz. A loaded key set is never emptied, so this happens once.
func (s *Server) trackHealth(ctx context.Context) {
	if s.bundle != nil {
		select {
		case <-ctx.Done():
			return
		case <-s.bundle.Ready():
		}
	}
	for _, src := range s.sources {
		for {
			changed := src.Changed()
			if src.Ready() {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
		}
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
}

// Start serves until Shutdown.
func (s *Server) Start() {
	s.wg.Go(func() { s.admin.Serve(s.log) })
	s.wg.Go(func() {
		if err := s.grpc.Serve(s.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("grpc server stopped", "error", err)
		}
	})
	if err := s.routes.watch(s.bg, s.RoutesReloaded); err != nil {
		s.log.Warn("routes_file not watched: a changed route table needs a restart", "file", s.cfg.RoutesFile, "error", err)
	}
	s.routes.announce()
	var grpcFiles *certreload.Files
	if s.cfg.TLS != nil {
		grpcFiles = &s.cfg.TLS.Files
	}
	s.log.Info("scopegate authz serving", "grpc", s.GRPCTarget(), "grpc_tls", tlsMode(grpcFiles), "admin", s.AdminAddr(),
		"admin_tls", tlsMode(s.cfg.AdminTLS), "policy_revision", revisionID(s.engine.Revision()))
}

// Drain is the first step of a shutdown: gRPC health (every service, Watch streams at once)
// and /readyz say not-serving from now on, while Checks are still served, so that Envoy and
// Kubernetes move them elsewhere before the listener closes. It returns after delay, or
// when cut is closed (nil: never). Shutdown follows.
func (s *Server) Drain(delay time.Duration, cut <-chan struct{}) {
	s.notServing()
	drain.Wait(delay, cut)
}

// notServing turns health and /readyz to not-serving for good (a later SERVING from
// trackHealth is ignored).
func (s *Server) notServing() {
	s.health.Shutdown()
	s.admin.Drain()
}

// Shutdown stops accepting, ends health Watch streams (UNAVAILABLE), lets in-flight Checks
// finish (up to ctx), then stops the rest; health says not-serving first if Drain did not
// already. Later calls return the first call's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Server) shutdown(ctx context.Context) error {
	s.notServing() // tell health checkers first, so load balancers drain us
	grpcstop.Graceful(ctx, s.grpc, s.streams)
	err := s.admin.Shutdown(ctx)
	if s.bundle != nil {
		s.bundle.Stop(ctx)
	}
	s.cancel()
	s.wg.Wait()
	if cerr := s.dlog.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if s.dlogFile != nil {
		s.dlogFile.Close()
	}
	if terr := s.tracing.Shutdown(ctx); terr != nil && err == nil {
		err = terr
	}
	return err
}

func tlsMode(f *certreload.Files) string {
	switch {
	case f == nil:
		return "off"
	case f.ClientCAFile != "":
		return "mutual"
	}
	return "server"
}

func revisionID(r *policy.Revision) string {
	if r == nil {
		return "(none yet)"
	}
	return r.ID
}
