// Package certreload serves TLS from certificate, key and CA files that change on disk: every
// new handshake gets the files' current contents, established connections keep theirs, and a
// bad replacement (a key that does not match, an expired certificate, a half-written file) is
// refused, logged and counted while the last good pair stays in force.
//
// Started, it follows the files through their directories (internal/watch), so atomic renames and the
// Kubernetes "..data" symlink swap of a mounted Secret are both seen.
package certreload

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/internal/watch"
)

// Files names the PEM files of one TLS endpoint.
type Files struct {
	// CertFile is the certificate chain (leaf first), KeyFile its private key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, makes client certificates required: a client must present one
	// signed by a CA in this bundle.
	ClientCAFile string `yaml:"client_ca_file"`
}

// Validate names the field at fault; at prefixes the error (such as "tls").
func (f *Files) Validate(at string) error {
	var errs []error
	if f.CertFile == "" {
		errs = append(errs, fmt.Errorf("%s.cert_file: required", at))
	}
	if f.KeyFile == "" {
		errs = append(errs, fmt.Errorf("%s.key_file: required", at))
	}
	return errors.Join(errs...)
}

// Metrics count reloads; one set serves every Reloader of a process, told apart by name.
type Metrics struct {
	reloads           *prometheus.CounterVec
	notAfter          *prometheus.GaugeVec
	handshakeFailures *prometheus.CounterVec
}

// NewMetrics registers the reload metrics on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopegate_tls_reloads_total",
			Help: "TLS certificate loads by endpoint and result (ok, or rejected: the last good certificate stayed).",
		}, []string{"endpoint", "result"}),
		notAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "scopegate_tls_certificate_not_after_timestamp_seconds",
			Help: "Expiry (Unix time) of the certificate each TLS endpoint serves.",
		}, []string{"endpoint"}),
		handshakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scopegate_tls_handshake_failures_total",
			Help: "Client TLS handshakes refused, by endpoint and reason (no_client_certificate, unknown_authority, expired_certificate, bad_certificate, protocol_version, no_shared_cipher, not_tls, client_rejected, aborted, other).",
		}, []string{"endpoint", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.reloads, m.notAfter, m.handshakeFailures)
	}
	return m
}

// Options configure a Reloader.
type Options struct {
	Files Files
	// Name labels logs and metrics ("grpc", "admin", "xds").
	Name    string
	Logger  *slog.Logger
	Metrics *Metrics
	// NextProtos are the ALPN protocols offered (gRPC adds h2 itself; HTTP servers want
	// "h2", "http/1.1").
	NextProtos []string
	// Debounce coalesces the burst of events of one rotation (watch.DefaultDebounce if zero).
	Debounce time.Duration
	// Now is the clock expiry is judged by (time.Now when nil).
	Now func() time.Time
	// OnReload, when set, is called after each reload a file change triggers, with its outcome.
	OnReload func(error)
	// ClientCertOptional verifies a client certificate when one is sent but does not require
	// one (an OAuth token endpoint: certificate-bound tokens for the clients that have one).
	ClientCertOptional bool
	// VerifyConnection, when set, is tls.Config.VerifyConnection of every handshake: after
	// the chain verified, it may refuse the peer (say, an identity the server does not serve).
	VerifyConnection func(tls.ConnectionState) error
}

// Reloader holds the current TLS material of one endpoint.
type Reloader struct {
	o       Options
	log     *slog.Logger
	current atomic.Pointer[material]

	mu      sync.Mutex
	changed chan struct{}

	hsLog handshakeLog
}

// material is one loaded generation: the per-handshake config is built once per load, so a
// handshake costs a pointer load.
type material struct {
	config *tls.Config
	leaf   *x509.Certificate
}

// New loads the files; an error names the file at fault. Start follows them afterwards.
func New(o Options) (*Reloader, error) {
	if err := o.Files.Validate(o.Name + ".tls"); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &Reloader{o: o, log: o.Logger.With("tls_endpoint", o.Name), changed: make(chan struct{})}
	m, err := r.load()
	if err != nil {
		r.o.Metrics.reloads.WithLabelValues(o.Name, "rejected").Inc()
		return nil, err
	}
	r.install(m)
	return r, nil
}

// Files returns the files followed.
func (r *Reloader) Files() Files { return r.o.Files }

// ServerConfig is the tls.Config to serve with: TLS 1.2 at least, client certificates
// required and verified when a client CA is configured, and the current certificate and CA
// for every new handshake (GetConfigForClient). Go's TLS server never renegotiates.
func (r *Reloader) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: r.o.NextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.current.Load().config, nil
		},
	}
}

// Leaf is the certificate currently served.
func (r *Reloader) Leaf() *x509.Certificate { return r.current.Load().leaf }

// Reload reads the files again; on any error the current material stays and the error is
// returned (and logged and counted).
func (r *Reloader) Reload() error {
	m, err := r.load()
	if err != nil {
		r.o.Metrics.reloads.WithLabelValues(r.o.Name, "rejected").Inc()
		r.log.Error("TLS certificate rejected: keeping the last good one", "error", err,
			"serving_serial", r.Leaf().SerialNumber.Text(16), "not_after", r.Leaf().NotAfter)
		return err
	}
	if m.leaf.SerialNumber.Cmp(r.Leaf().SerialNumber) != 0 {
		r.log.Info("TLS certificate reloaded", "serial", m.leaf.SerialNumber.Text(16), "not_after", m.leaf.NotAfter)
	}
	r.install(m)
	return nil
}

// Start follows the files' directories and reloads after each change until ctx ends. The
// watch is in place when Start returns; an error means rotation needs a restart (the
// certificate in force keeps being served).
func (r *Reloader) Start(ctx context.Context) error {
	w, err := watch.New(r.log, r.o.Debounce)
	if err != nil {
		return fmt.Errorf("%s TLS files: %w", r.o.Name, err)
	}
	files := []string{r.o.Files.CertFile, r.o.Files.KeyFile}
	if r.o.Files.ClientCAFile != "" {
		files = append(files, r.o.Files.ClientCAFile)
	}
	if err := w.Set(files); err != nil {
		return fmt.Errorf("%s TLS files: %w", r.o.Name, err)
	}
	go w.Run(ctx)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.Changes():
				err := r.Reload()
				if r.o.OnReload != nil {
					r.o.OnReload(err)
				}
			}
		}
	}()
	return nil
}

// Changed is closed the next time a new certificate or CA is installed.
func (r *Reloader) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

func (r *Reloader) install(m *material) {
	r.current.Store(m)
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	r.o.Metrics.reloads.WithLabelValues(r.o.Name, "ok").Inc()
	r.o.Metrics.notAfter.WithLabelValues(r.o.Name).Set(float64(m.leaf.NotAfter.Unix()))
}

func (r *Reloader) load() (*material, error) {
	f := r.o.Files
	pair, leaf, err := LoadPair(f.CertFile, f.KeyFile, r.o.Now())
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		Certificates:     []tls.Certificate{pair},
		NextProtos:       r.o.NextProtos,
		VerifyConnection: r.o.VerifyConnection,
	}
	if f.ClientCAFile != "" {
		pool, err := LoadPool(f.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client_ca_file: %w", err)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
		if r.o.ClientCertOptional {
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	return &material{config: cfg, leaf: leaf}, nil
}

// LoadPair reads a certificate chain and its key, and refuses a pair whose key does not match
// or whose leaf is not valid at now. Errors name the files.
func LoadPair(certFile, keyFile string, now time.Time) (tls.Certificate, *x509.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("cert_file: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("key_file: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("cert_file %s and key_file %s: %w", certFile, keyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("cert_file %s: %w", certFile, err)
		}
	}
	switch {
	case now.After(leaf.NotAfter):
		return tls.Certificate{}, nil, fmt.Errorf("cert_file %s: certificate expired at %s", certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return tls.Certificate{}, nil, fmt.Errorf("cert_file %s: certificate not valid before %s", certFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return pair, leaf, nil
}

// LoadPool reads a PEM bundle of CA certificates; a file without one is an error.
func LoadPool(caFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", caFile)
	}
	return pool, nil
}

// ClientConfig is a static client-side tls.Config: trust caFile, present certFile/keyFile
// when set, and expect serverName. For tools and tests; scopegate's own servers use Reloader.
func ClientConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	pool, err := LoadPool(caFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: serverName}
	if certFile != "" || keyFile != "" {
		pair, _, err := LoadPair(certFile, keyFile, time.Now())
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
