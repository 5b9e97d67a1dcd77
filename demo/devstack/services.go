// Package devstack runs the demo's services in one process: the demo identity provider, the
// demo API, scopegate authz and the xDS control plane, and optionally Envoy as a child process.
// `scopegate dev` uses Run; tests start the services one by one (on port 0) and wire them.
package devstack

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/scopegate/scopegate/controlplane"
	"github.com/scopegate/scopegate/demo/demoapi"
	"github.com/scopegate/scopegate/demo/idp"
	authzconfig "github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/server"
	"github.com/scopegate/scopegate/internal/admin"
	"github.com/scopegate/scopegate/internal/bind"
)

// shutdownTimeout bounds each service's graceful shutdown.
const shutdownTimeout = 10 * time.Second

// Service is one running service: it serves until the context it was started with ends, then
// shuts down gracefully; Done is closed and Err set once it has stopped.
type Service struct {
	Name string
	done chan struct{}
	err  error
}

func newService(name string) *Service { return &Service{Name: name, done: make(chan struct{})} }

func (s *Service) finish(err error) {
	if err != nil {
		s.err = fmt.Errorf("%s: %w", s.Name, err)
	}
	close(s.done)
}

// Done is closed when the service has stopped.
func (s *Service) Done() <-chan struct{} { return s.done }

// Wait blocks until the service has stopped and returns why it stopped (nil after a clean
// shutdown).
func (s *Service) Wait() error {
	<-s.done
	return s.err
}

// newRegistry is a service's own registry, with the Go and process collectors the standalone
// subcommands register.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// serveHTTP serves h on ln until ctx ends, then shuts the server down gracefully.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// IDP is the running demo identity provider.
type IDP struct {
	*Service
	Provider *idp.Provider
	Registry *prometheus.Registry
	// Addr and AdminAddr are the bound addresses of the OAuth endpoints and the admin API.
	Addr, AdminAddr string
}

// IDPOption changes how StartIDP runs the provider.
type IDPOption func(*idpOptions)

type idpOptions struct{ issuerFromListener bool }

// WithIssuerFromListener sets the issuer to http://ADDR, ADDR being the address the provider
// listener was bound to (for listeners on port 0, in tests).
func WithIssuerFromListener() IDPOption { return func(o *idpOptions) { o.issuerFromListener = true } }

// StartIDP binds the provider's listeners (cfg.Listen, cfg.Admin) and serves until ctx ends.
// It serves what `scopegate idp` serves: the provider on one listener, the admin API
// (/admin/rotate-keys, /admin/keys, /healthz, /readyz, /metrics) on the other. It is ready
// when it returns: both listeners are bound and the signing key exists.
func StartIDP(ctx context.Context, cfg *idp.Config, log *slog.Logger, opts ...IDPOption) (*IDP, error) {
	var o idpOptions
	for _, opt := range opts {
		opt(&o)
	}
	ln, err := bind.TCP(cfg.Listen, "listen")
	if err != nil {
		return nil, err
	}
	if o.issuerFromListener {
		cfg.Issuer = "http://" + ln.Addr().String()
	}
	reg := newRegistry()
	p, err := idp.New(cfg, log, idp.WithRegisterer(reg))
	if err != nil {
		ln.Close()
		return nil, err
	}
	adm, err := admin.New(cfg.Admin, reg, func() (any, error) {
		return map[string]any{"issuer": p.Issuer(), "keys": p.Keys()}, nil
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("idp admin: %w", err)
	}
	adm.Handle("/admin/", p.AdminHandler())
	s := &IDP{Service: newService("idp"), Provider: p, Registry: reg, Addr: ln.Addr().String(), AdminAddr: adm.Addr()}
	log.Warn(idp.Warning)
	log.Info("idp listening", "addr", s.Addr, "admin", s.AdminAddr, "issuer", p.Issuer(), "audience", cfg.API.Audience)
	go adm.Serve(log)
	go func() {
		err := serveHTTP(ctx, ln, p.Handler())
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		_ = adm.Shutdown(sctx)
		s.finish(err)
	}()
	return s, nil
}

// API is the running demo API (the upstream).
type API struct {
	*Service
	Addr string
}

// StartAPI binds listen and serves the demo API until ctx ends; it is ready when it returns.
func StartAPI(ctx context.Context, listen string, log *slog.Logger, opts ...demoapi.Option) (*API, error) {
	ln, err := bind.TCP(listen, "--api-listen")
	if err != nil {
		return nil, err
	}
	s := &API{Service: newService("demo-api"), Addr: ln.Addr().String()}
	log.Info("demo API listening", "addr", s.Addr)
	go func() { s.finish(serveHTTP(ctx, ln, demoapi.New(opts...).Handler())) }()
	return s, nil
}

// Authz is the running ext_authz service.
type Authz struct {
	*Service
	Server *server.Server
	// ClientTLS is how WaitReady reaches a gRPC port with tls (a client certificate from the
	// client CA when it is mutual TLS); nil: plaintext.
	ClientTLS *tls.Config
}

// StartAuthz builds the authz service from cfg (binding its listeners) and serves until ctx
// ends, then finishes in-flight Checks within cfg.ShutdownTimeout. It is ready once WaitReady
// returns: every issuer's keys are fetched.
func StartAuthz(ctx context.Context, cfg *authzconfig.Config, log *slog.Logger) (*Authz, error) {
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	s := &Authz{Service: newService("authz"), Server: srv}
	srv.Start()
	go func() {
		<-ctx.Done()
		log.Info("shutting down: finishing in-flight Checks", "timeout", cfg.ShutdownTimeout.String())
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		s.finish(srv.Shutdown(sctx))
	}()
	return s, nil
}

// WaitReady waits, through the gRPC health service (the signal Envoy's health checks use),
// until the Check service is SERVING: every issuer has keys. ctx bounds the wait.
func (a *Authz) WaitReady(ctx context.Context) error {
	creds := insecure.NewCredentials()
	if a.ClientTLS != nil {
		creds = credentials.NewTLS(a.ClientTLS)
	}
	target := dialable(a.Server.GRPCAddr())
	if t := a.Server.GRPCTarget(); t != a.Server.GRPCAddr() {
		target = t // a Unix socket
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("authz health: %w", err)
	}
	defer conn.Close()
	stream, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
	if err != nil {
		return fmt.Errorf("authz health: %w", err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("authz not ready (no keys from the issuers yet?): %w", ctx.Err())
			}
			return fmt.Errorf("authz health: %w", err)
		}
		if resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			if !a.Server.Ready() {
				return errors.New("authz health says SERVING but the server is not ready")
			}
			return nil
		}
	}
}

// XDS is the running control plane.
type XDS struct {
	*Service
	CP *controlplane.Service
}

// StartXDS loads the control plane's config, binds its listeners and serves until ctx ends.
// It is ready when it returns: a valid config is loaded and its snapshots are set.
func StartXDS(ctx context.Context, opts controlplane.Options) (*XDS, error) {
	if opts.Registry == nil {
		opts.Registry = newRegistry()
	}
	cp, err := controlplane.New(ctx, opts)
	if err != nil {
		return nil, err
	}
	s := &XDS{Service: newService("xds"), CP: cp}
	go func() { s.finish(cp.Run(ctx, nil, shutdownTimeout)) }()
	return s, nil
}

// dialable turns a bound address with an unspecified IP (":9191", "[::]:9191") into a loopback
// address one can connect to.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// Loopback binds an address without a host (":9400") to 127.0.0.1: `scopegate dev` serves the
// demo, whose passwords and secrets are public, on localhost only. Other addresses are kept.
func Loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "" {
		return addr
	}
	return net.JoinHostPort("127.0.0.1", port)
}
