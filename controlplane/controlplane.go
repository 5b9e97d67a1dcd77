// Package controlplane runs scopegate's xDS control plane: it loads the declarative config,
// translates it into one snapshot per fleet, serves the snapshots over ADS, reloads on file
// change or on demand, and exposes /healthz, /readyz, /metrics and /status.
//
// The pieces live in subpackages: config (the file and its validation), translate (Envoy
// resources, validated as Envoy would), xdsserver (cache, ADS server, ACK/NACK tracking) and
// watch (file change detection). This package only wires them.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/controlplane/translate"
	"github.com/scopegate/scopegate/controlplane/xdsserver"
	"github.com/scopegate/scopegate/internal/admin"
	"github.com/scopegate/scopegate/internal/bind"
	"github.com/scopegate/scopegate/internal/certreload"
	"github.com/scopegate/scopegate/internal/drain"
	"github.com/scopegate/scopegate/internal/watch"
)

// Options configure a Service.
type Options struct {
	// ConfigPath is the config file; it is reloaded when it (or a certificate it names) changes.
	ConfigPath string
	Logger     *slog.Logger
	// Registry receives the metrics and backs /metrics (a new one when nil).
	Registry *prometheus.Registry
	// Listen and Admin override the file's listen and admin addresses when set.
	Listen, Admin string
	// ReadFile reads certificate files (os.ReadFile when nil).
	ReadFile translate.ReadFileFunc
	// Debounce coalesces bursts of file events (watch.DefaultDebounce when zero).
	Debounce time.Duration
	// XDS tunes the gRPC server (keepalive, connection age).
	XDS xdsserver.Options
	// Tracer, when set, traces each reload: loading, translating, and pushing to the fleets.
	Tracer trace.Tracer
	// DrainDelay: when Run's context ends, /readyz says "draining" and ADS streams are still
	// served for DrainDelay before they end (UNAVAILABLE, so Envoy reconnects, to another
	// replica); DrainCut, when closed, cuts the wait short.
	DrainDelay time.Duration
	DrainCut   <-chan struct{}
}

// Service is a running control plane.
type Service struct {
	opts    Options
	log     *slog.Logger
	reg     *prometheus.Registry
	xds     *xdsserver.Server
	watcher *watch.Watcher
	metrics *reloadMetrics

	grpcLn net.Listener
	admin  *admin.Server
	// serverTLS is the tls block the ADS server started with (nil: plaintext), and tls its
	// certificate; the block takes effect on restart, the files' contents on change.
	serverTLS *config.ServerTLS
	tls       *certreload.Reloader
	stopTLS   context.CancelFunc

	reloadMu sync.Mutex // one reload at a time
	mu       sync.Mutex // guards the fields below
	cfg      *config.Config
	loadedAt time.Time
	last     ReloadStatus
}

// ReloadStatus is the outcome of the last reload attempt.
type ReloadStatus struct {
	At    time.Time `json:"at"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

// New loads and applies the config and binds the gRPC and admin listeners; a config that does
// not load is an error (there is nothing to serve, nor an address to serve it on).
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	s := &Service{opts: opts, log: opts.Logger, reg: opts.Registry, stopTLS: func() {}}
	s.metrics = newReloadMetrics(opts.Registry)
	xopts := opts.XDS
	xopts.Logger, xopts.Registerer = opts.Logger, opts.Registry
	// The ADS server's own TLS is read first: the server is built with it. A file that does
	// not load fails here with the same error Reload would give.
	first, err := config.Load(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	if first.TLS != nil {
		s.serverTLS = first.TLS
		s.tls, err = certreload.New(certreload.Options{Files: first.TLS.Files, Name: "xds", Logger: opts.Logger,
			Metrics: certreload.NewMetrics(opts.Registry)})
		if err != nil {
			return nil, fmt.Errorf("%s: tls: %w", opts.ConfigPath, err)
		}
		xopts.TLS, xopts.Creds = s.tls.ServerConfig(), s.tls.Credentials()
		if first.TLS.ClientCAFile != "" {
			xopts.TrustDomain = first.TLS.TrustDomain
		}
		tlsCtx, stop := context.WithCancel(context.Background())
		s.stopTLS = stop
		if err := s.tls.Start(tlsCtx); err != nil {
			s.log.Warn("ADS certificate files not watched: rotation needs a restart", "error", err)
		}
	}
	s.xds = xdsserver.New(xopts)

	if err := s.Reload(ctx); err != nil {
		s.stopTLS()
		return nil, err
	}
	cfg := s.Config()
	listen, adminAddr := cfg.Listen, cfg.Admin
	if opts.Listen != "" {
		listen = opts.Listen
	}
	if opts.Admin != "" {
		adminAddr = opts.Admin
	}
	w, err := watch.New(opts.Logger, opts.Debounce)
	if err != nil {
		return nil, err
	}
	s.watcher = w
	if err := s.watcher.Set(s.watchedFiles(cfg)); err != nil {
		return nil, err
	}
	s.grpcLn, err = bind.TCP(listen, "listen")
	if err != nil {
		return nil, err
	}
	s.admin, err = admin.New(adminAddr, opts.Registry, s.ready)
	if err != nil {
		s.grpcLn.Close()
		return nil, err
	}
	s.admin.Handle("GET /status", http.HandlerFunc(s.serveStatus))
	return s, nil
}

// XDSAddr is the address the ADS server listens on.
func (s *Service) XDSAddr() string { return s.grpcLn.Addr().String() }

// AdminAddr is the address of the admin HTTP server.
func (s *Service) AdminAddr() string { return s.admin.Addr() }

// Run serves until ctx ends, reloading on file changes and on each value from reload (such
// as SIGHUP; may be nil), then shuts down gracefully within shutdownTimeout.
func (s *Service) Run(ctx context.Context, reload <-chan struct{}, shutdownTimeout time.Duration) error {
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go s.watcher.Run(watchCtx)
	go s.admin.Serve(s.log)

	served := make(chan error, 1)
	go func() { served <- s.xds.Serve(s.grpcLn) }()
	s.log.Info("xds control plane serving", "xds", s.XDSAddr(), "ads_tls", s.adsTLSMode(), "admin", s.AdminAddr(), "config", s.opts.ConfigPath)

	for {
		select {
		case <-ctx.Done():
			if s.opts.DrainDelay > 0 {
				s.admin.Drain()
				s.log.Info("draining: /readyz says draining, ADS streams are still served", "drain_delay", s.opts.DrainDelay.String())
				drain.Wait(s.opts.DrainDelay, s.opts.DrainCut)
			}
			s.shutdown(shutdownTimeout)
			<-served
			return nil
		case err := <-served:
			s.shutdown(shutdownTimeout)
			return fmt.Errorf("xds server: %w", err)
		case <-s.watcher.Changes():
			s.log.Info("config or certificate changed on disk: reloading")
			_ = s.Reload(ctx) // logged and counted; the last good config stays
		case <-reload:
			s.log.Info("reload requested")
			_ = s.Reload(ctx)
		}
	}
}

func (s *Service) shutdown(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s.admin.Drain()
	s.stopTLS()
	s.xds.Shutdown(ctx)
	if err := s.admin.Shutdown(ctx); err != nil {
		s.log.Warn("admin shutdown", "error", err)
	}
	s.log.Info("xds control plane stopped")
}

// Reload loads the config file and, if it is valid as a whole, pushes what changed to every
// connected node. An invalid file changes nothing: the last good config stays in force.
func (s *Service) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.metrics.reloads.Inc()
	var span trace.Span
	if s.opts.Tracer != nil {
		ctx, span = s.opts.Tracer.Start(ctx, "scopegate.xds.reload", trace.WithAttributes(attribute.String("scopegate.config", s.opts.ConfigPath)))
		defer span.End()
	}
	err := s.reload(ctx)
	if span != nil && err != nil {
		span.SetStatus(codes.Error, "config rejected")
	}
	s.mu.Lock()
	hadConfig := s.cfg != nil
	s.last = ReloadStatus{At: time.Now(), OK: err == nil}
	if err != nil {
		s.last.Error = err.Error()
	}
	s.mu.Unlock()
	if err != nil {
		s.metrics.rejections.Inc()
		s.metrics.valid.Set(0)
		// At start there is no good config to keep, and New's caller reports the error.
		if hadConfig {
			s.log.Error("config rejected: keeping the last good config", "config", s.opts.ConfigPath, "error", err)
		}
		return err
	}
	s.metrics.valid.Set(1)
	s.metrics.lastSuccess.SetToCurrentTime()
	return nil
}

func (s *Service) reload(ctx context.Context) error {
	cfg, err := config.Load(s.opts.ConfigPath)
	if err != nil {
		return err
	}
	// Validate judged the file's tls block; what counts is the server actually running.
	if keys := cfg.PrivateKeysPushed(); len(keys) > 0 && !cfg.InsecurePlaintextSecrets {
		switch {
		case s.serverTLS == nil:
			return fmt.Errorf("%s: insecure_plaintext_secrets: this ADS server was started without tls (tls takes effect on restart), "+
				"so private keys would go to Envoy in the clear (%s)", s.opts.ConfigPath, strings.Join(keys, "; "))
		case s.serverTLS.ClientCAFile == "":
			return fmt.Errorf("%s: insecure_plaintext_secrets: this ADS server was started without tls.client_ca_file (tls takes effect on restart), "+
				"so any client could name a fleet and receive its private keys (%s)", s.opts.ConfigPath, strings.Join(keys, "; "))
		}
	}
	start := time.Now()
	tctx, end := s.span(ctx, "scopegate.xds.translate")
	fleets, err := translate.Build(tctx, cfg, s.opts.ReadFile)
	end()
	s.metrics.buildSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return fmt.Errorf("%s: %w", s.opts.ConfigPath, err)
	}
	if prev := s.Config(); prev != nil {
		if cfg.Listen != prev.Listen || cfg.Admin != prev.Admin {
			s.log.Warn("listen or admin address changed: takes effect on restart", "listen", cfg.Listen, "admin", cfg.Admin)
		}
		if !sameServerTLS(cfg.TLS, s.serverTLS) {
			s.log.Warn("tls block changed: takes effect on restart (the files' contents reload by themselves)")
		}
	}
	for _, w := range s.warnings(cfg) {
		s.log.Warn(w)
	}
	pctx, end := s.span(ctx, "scopegate.xds.push", attribute.Int("scopegate.fleets", len(fleets)))
	err = s.xds.Apply(pctx, fleets)
	end()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.cfg, s.loadedAt = cfg, time.Now()
	s.mu.Unlock()
	if s.watcher != nil {
		if err := s.watcher.Set(s.watchedFiles(cfg)); err != nil {
			s.log.Warn("cannot watch a certificate directory: changes there need a SIGHUP", "error", err)
		}
	}
	versions := map[string]map[string]string{}
	for _, f := range s.xds.Fleets() {
		versions[f.Name] = f.Versions
	}
	s.log.Info("config applied", "config", s.opts.ConfigPath, "fleets", versions)
	return nil
}

// span starts a child span when tracing; end ends it (a no-op otherwise).
func (s *Service) span(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, func()) {
	if s.opts.Tracer == nil {
		return ctx, func() {}
	}
	ctx, sp := s.opts.Tracer.Start(ctx, name, trace.WithAttributes(attrs...))
	return ctx, func() { sp.End() }
}

func (s *Service) watchedFiles(cfg *config.Config) []string {
	return append([]string{s.opts.ConfigPath}, cfg.TLSFiles()...)
}

// Config is the config in force.
func (s *Service) Config() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// XDS is the ADS server, for inspection.
func (s *Service) XDS() *xdsserver.Server { return s.xds }

func (s *Service) ready() (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg == nil {
		return nil, errors.New("no valid config loaded")
	}
	return map[string]any{"config_loaded_at": s.loadedAt, "last_reload": s.last}, nil
}

// Status is what /status serves.
type Status struct {
	Config ConfigStatus            `json:"config"`
	Fleets []xdsserver.FleetStatus `json:"fleets"`
	Nodes  []xdsserver.NodeStatus  `json:"nodes"`
}

// ConfigStatus says which config is in force, how the last reload went, and what in it is
// insecure.
type ConfigStatus struct {
	File       string       `json:"file"`
	LoadedAt   time.Time    `json:"loaded_at"`
	LastReload ReloadStatus `json:"last_reload"`
	// ADSTLS is "off", "server" or "mutual" (with each Envoy bound to its fleet).
	ADSTLS   string   `json:"ads_tls"`
	Warnings []string `json:"warnings,omitempty"`
}

func (s *Service) adsTLSMode() string {
	switch {
	case s.serverTLS == nil:
		return "off"
	case s.serverTLS.ClientCAFile != "":
		return "mutual"
	}
	return "server"
}

// warnings are the insecure settings in force, logged at each load and shown in /status.
func (s *Service) warnings(cfg *config.Config) []string {
	if cfg == nil {
		return nil
	}
	var out []string
	keys := cfg.PrivateKeysPushed()
	switch {
	case s.serverTLS == nil && len(keys) > 0:
		out = append(out, "insecure_plaintext_secrets: private keys are pushed over plaintext ADS ("+strings.Join(keys, "; ")+"): for local development only")
	case s.serverTLS == nil && cfg.InsecurePlaintextSecrets:
		out = append(out, "insecure_plaintext_secrets is set: private keys would be pushed over plaintext ADS")
	case s.serverTLS != nil && s.serverTLS.ClientCAFile == "" && len(keys) > 0:
		out = append(out, "insecure_plaintext_secrets: ADS tls has no client_ca_file: any client naming a fleet receives its private keys ("+strings.Join(keys, "; ")+"): for local development only")
	}
	return out
}

func sameServerTLS(a, b *config.ServerTLS) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Status reports the config, the fleets' versions and every connected node.
func (s *Service) Status() Status {
	s.mu.Lock()
	cs := ConfigStatus{File: s.opts.ConfigPath, LoadedAt: s.loadedAt, LastReload: s.last, ADSTLS: s.adsTLSMode()}
	cfg := s.cfg
	s.mu.Unlock()
	cs.Warnings = s.warnings(cfg)
	return Status{Config: cs, Fleets: s.xds.Fleets(), Nodes: s.xds.Nodes()}
}

func (s *Service) serveStatus(w http.ResponseWriter, _ *http.Request) {
	admin.WriteJSON(w, http.StatusOK, s.Status())
}

type reloadMetrics struct {
	reloads, rejections prometheus.Counter
	valid, lastSuccess  prometheus.Gauge
	buildSeconds        prometheus.Histogram
}

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	m := &reloadMetrics{
		reloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scopegate_xds_config_reloads_total",
			Help: "Config loads attempted (startup, file change, SIGHUP).",
		}),
		rejections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scopegate_xds_config_rejections_total",
			Help: "Config loads refused as invalid; the last good config stayed in force.",
		}),
		valid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scopegate_xds_config_valid",
			Help: "1 if the last config load succeeded, 0 if it was rejected.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scopegate_xds_config_last_success_timestamp_seconds",
			Help: "Unix time of the last config load that was applied.",
		}),
		buildSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "scopegate_xds_snapshot_build_seconds",
			Help:    "Time to translate and validate the config into fleet snapshots.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	reg.MustRegister(m.reloads, m.rejections, m.valid, m.lastSuccess, m.buildSeconds)
	return m
}
