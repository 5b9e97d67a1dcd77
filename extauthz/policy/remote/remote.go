// Package remote keeps the policy in step with a bundle server: OPA's own downloader polls it
// (ETag / If-None-Match, 304, jittered polling, backoff on errors), OPA's bundle reader checks
// .signatures.json, and a bundle goes live only through policy.Engine.Install (it compiles and
// its tests pass). The last good bundle is kept on disk so a restart with the server down
// still serves it.
package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/download"
	"github.com/open-policy-agent/opa/v1/logging"
	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/plugins/rest"

	"github.com/scopegate/scopegate/extauthz/policy"
)

// maxBundleBytes bounds what a bundle server can make scopegate read.
const maxBundleBytes = 64 << 20

// Persisted file names inside persist_dir.
const (
	persistBundle = "bundle.tar.gz"
	persistMeta   = "bundle.json"
)

// Bundle is where the policy is pulled from and how: the authz config's policy.bundle, as
// the wiring translates it.
type Bundle struct {
	URL string
	// MinDelay and MaxDelay bound the delay between two polls (whole seconds).
	MinDelay, MaxDelay time.Duration
	// Signing, when set, refuses unsigned and badly signed bundles.
	Signing *policy.Signing
	// PersistDir keeps the last good bundle ("" : none kept).
	PersistDir string
	// The credentials OPA's REST client presents: a bearer token file or a client
	// certificate; CAFile verifies the server (system roots when empty). OPA's client reads
	// these files itself.
	BearerTokenFile, ClientCertFile, ClientKeyFile, CAFile string
}

// Options configure a Source.
type Options struct {
	Bundle Bundle
	Engine *policy.Engine
	Logger *slog.Logger
	// Manual turns polling off: downloads happen only on Trigger (tests).
	Manual bool
}

// Status is what /readyz shows of the bundle in force.
type Status struct {
	URL      string    `json:"url"`
	Revision string    `json:"revision,omitempty"`
	ETag     string    `json:"etag,omitempty"`
	From     string    `json:"from,omitempty"` // "server" or "persisted"
	LoadedAt time.Time `json:"loaded_at,omitzero"`
	// LastError is the last failed download or rejected bundle, cleared by the next success.
	LastError string `json:"last_error,omitempty"`
}

// Source downloads, verifies and installs bundles.
type Source struct {
	o      Options
	log    *slog.Logger
	vc     *bundle.VerificationConfig
	dl     *download.Downloader
	ready  chan struct{}
	once   sync.Once
	mu     sync.Mutex
	status Status
	// last is the ETag of the last download; rejectedETag the last rejected bundle's, so
	// that one bad bundle downloaded again at each retry counts as one rejection.
	last         lastResponse
	rejectedETag string
	// The polling loop (Start, Stop); life keeps Stop from returning while an update is
	// being applied, and stopped turns later ones (a download Stop cut short) into no-ops.
	cancel  context.CancelFunc
	done    chan struct{}
	life    sync.RWMutex
	stopped bool
}

// New builds the downloader and installs the persisted bundle, if there is one that reads,
// verifies, compiles and passes its tests. It does not contact the server: Start does.
func New(ctx context.Context, o Options) (*Source, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := o.Bundle
	// The URL may carry a presigned query (a signature that grants the download) or user
	// info: logs, /readyz and errors show scheme, host and path only.
	s := &Source{o: o, log: o.Logger.With("bundle_url", RedactURL(c.URL)), ready: make(chan struct{}), status: Status{URL: RedactURL(c.URL)}}
	if c.Signing != nil {
		vc, err := policy.Verification(c.Signing)
		if err != nil {
			return nil, err
		}
		s.vc = vc
	}
	client, path, err := restClient(c, &s.last)
	if err != nil {
		return nil, err
	}
	minS, maxS := int64(c.MinDelay/time.Second), int64(c.MaxDelay/time.Second)
	// scopegate triggers each download itself (poll.go): OPA's own loop retries a failure
	// after 0, 160, 256 ms ..., well inside min_delay.
	trigger := plugins.TriggerManual
	dc := download.Config{Trigger: &trigger, Polling: download.PollingConfig{MinDelaySeconds: &minS, MaxDelaySeconds: &maxS}}
	if err := dc.ValidateAndInjectDefaults(); err != nil {
		return nil, fmt.Errorf("policy.bundle.polling: %w", err)
	}
	s.dl = download.New(dc, client, path).
		WithBundleVerificationConfig(s.vc).
		WithSizeLimitBytes(maxBundleBytes).
		WithBundlePersistence(c.PersistDir != "").
		WithCallback(s.update)
	if c.PersistDir != "" {
		s.loadPersisted(ctx)
	}
	return s, nil
}

// RedactURL is raw with scheme, host and path only: no user info, query or fragment (a
// presigned URL's signature is a credential). Unparseable, it is shown as a placeholder.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "(unparseable URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
}

// redactError is err with every URL it names shown redacted: OPA's and net/http's errors
// name the URL requested (the configured one, or a redirect's target), query included.
func redactError(err error, configured string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) && ue.URL != "" {
		msg = strings.ReplaceAll(msg, ue.URL, RedactURL(ue.URL))
	}
	if u, perr := url.Parse(configured); perr == nil {
		if u.RawQuery != "" {
			msg = strings.ReplaceAll(msg, u.RawQuery, "REDACTED")
		}
		if u.User != nil {
			msg = strings.ReplaceAll(msg, u.User.String()+"@", "")
		}
	}
	return errors.New(msg)
}

// keepCredentialsAtOrigin is the bundle client's redirect policy: a redirect is followed
// (bundle servers send clients to object storage), but the Authorization header goes only to
// the origin configured (same scheme, host and port), and a redirect from https to plain http
// is refused.
func keepCredentialsAtOrigin(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	origin := via[0].URL
	if origin.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("refused a redirect from https to %s", req.URL.Scheme)
	}
	if req.URL.Scheme != origin.Scheme || req.URL.Host != origin.Host {
		req.Header.Del("Authorization")
		req.Header.Del("Cookie")
	}
	return nil
}

// restClient is OPA's REST client for the server part of the URL; the rest is the path.
func restClient(c Bundle, last *lastResponse) (rest.Client, string, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return rest.Client{}, "", errors.New("policy.bundle.url: not a URL")
	}
	type bearer struct {
		TokenPath string `json:"token_path"`
	}
	type clientTLS struct {
		Cert       string `json:"cert"`
		PrivateKey string `json:"private_key"`
	}
	type serverTLS struct {
		CACert string `json:"ca_cert"`
	}
	rc := struct {
		URL         string     `json:"url"`
		TLS         *serverTLS `json:"tls,omitempty"`
		Credentials struct {
			Bearer    *bearer    `json:"bearer,omitempty"`
			ClientTLS *clientTLS `json:"client_tls,omitempty"`
		} `json:"credentials"`
	}{URL: u.Scheme + "://" + u.Host}
	cr := c
	if cr.CAFile != "" {
		rc.TLS = &serverTLS{CACert: cr.CAFile}
	}
	if cr.BearerTokenFile != "" {
		rc.Credentials.Bearer = &bearer{TokenPath: cr.BearerTokenFile}
	}
	if cr.ClientCertFile != "" {
		rc.Credentials.ClientTLS = &clientTLS{Cert: cr.ClientCertFile, PrivateKey: cr.ClientKeyFile}
	}
	raw, err := json.Marshal(rc)
	if err != nil {
		return rest.Client{}, "", err
	}
	raw, lookup, err := withETagPlugin(raw, last)
	if err != nil {
		return rest.Client{}, "", fmt.Errorf("policy.bundle: %w", err)
	}
	// OPA's REST client logs request headers at debug level (masked); ours stays silent and
	// the downloader's errors reach us through the callback.
	client, err := rest.New(raw, nil, rest.Name("scopegate-bundle"), rest.Logger(logging.NewNoOpLogger()), rest.AuthPluginLookup(lookup))
	if err != nil {
		return rest.Client{}, "", fmt.Errorf("policy.bundle: %w", redactError(err, c.URL))
	}
	path := strings.TrimPrefix(u.EscapedPath(), "/")
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	return client, path, nil
}

// Start polls the server until Stop (or ctx ends): at once, then every min_delay to
// max_delay (jittered), backing off within those bounds after a failure.
func (s *Source) Start(ctx context.Context) {
	if s.o.Manual || s.cancel != nil {
		return
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go s.poll(ctx, s.done)
}

// Stop ends polling and waits for a bundle being installed.
func (s *Source) Stop(ctx context.Context) {
	if s.cancel != nil {
		s.cancel()
		select {
		case <-s.done:
		case <-ctx.Done():
		}
	}
	s.life.Lock()
	s.stopped = true
	s.life.Unlock()
}

// Trigger downloads once (Options.Manual); the error is the download's or the rejection's.
func (s *Source) Trigger(ctx context.Context) error { return s.dl.Trigger(ctx) }

// Ready is closed once a good bundle (downloaded or persisted) is in force.
func (s *Source) Ready() <-chan struct{} { return s.ready }

// Status is the bundle in force and the last failure.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// update is the downloader's callback: u carries an error, a 304 (no bundle), or a bundle
// that read and verified. A returned error makes the downloader back off.
func (s *Source) update(ctx context.Context, u download.Update) error {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.stopped {
		return nil
	}
	if u.Error != nil {
		s.failed(u.Error)
		return nil // the downloader already backs off on its own error
	}
	if u.Bundle == nil {
		return nil // 304: the bundle in force is current
	}
	rev, err := s.o.Engine.Install(ctx, u.Bundle, RedactURL(s.o.Bundle.URL))
	if err != nil {
		shown := redactError(err, s.o.Bundle.URL)
		s.log.Error("policy bundle rejected; keeping the revision in force", "error", shown, "etag", u.ETag, "revision", s.Status().Revision)
		s.setError(shown)
		return shown
	}
	if s.o.Bundle.PersistDir != "" && u.Raw != nil {
		if err := s.persist(u.Raw, u.ETag); err != nil {
			s.log.Warn("policy bundle not persisted", "error", err, "persist_dir", s.o.Bundle.PersistDir)
		}
	}
	s.installed(rev, u.ETag, "server")
	return nil
}

// failed records a download that produced no bundle. A bundle that came but did not read or
// verify (bad signature, corrupt tarball) is a rejected load; a transport or HTTP failure is
// not a load at all.
func (s *Source) failed(err error) {
	var (
		he download.HTTPError
		ue *url.Error
	)
	shown := redactError(err, s.o.Bundle.URL)
	if errors.As(err, &he) || errors.As(err, &ue) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("policy bundle download failed", "error", shown)
	} else if etag := s.last.get(); etag != "" && etag == s.rejectedETagNow() {
		// The same bundle again (OPA's downloader forgets a bad one's ETag and downloads it
		// at every retry): one bundle, one rejection.
		s.log.Debug("policy bundle still rejected", "etag", etag, "error", shown)
	} else {
		s.o.Engine.Rejected()
		s.setRejected(etag)
		s.log.Error("policy bundle rejected; keeping the revision in force", "error", shown, "etag", etag, "revision", s.Status().Revision)
	}
	s.setError(shown)
}

func (s *Source) rejectedETagNow() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejectedETag
}

func (s *Source) setRejected(etag string) {
	s.mu.Lock()
	s.rejectedETag = etag
	s.mu.Unlock()
}

func (s *Source) setError(err error) {
	s.mu.Lock()
	s.status.LastError = err.Error()
	s.mu.Unlock()
}

func (s *Source) installed(rev *policy.Revision, etag, from string) {
	s.mu.Lock()
	s.status.Revision, s.status.ETag, s.status.From, s.status.LoadedAt, s.status.LastError = rev.ID, etag, from, rev.LoadedAt, ""
	s.rejectedETag = ""
	s.mu.Unlock()
	s.once.Do(func() { close(s.ready) })
}

type meta struct {
	ETag string `json:"etag"`
}

// persist writes the bundle's bytes and ETag by rename, so a crash leaves the old pair or
// the new bundle, never half a file.
func (s *Source) persist(r io.Reader, etag string) error {
	dir := s.o.Bundle.PersistDir
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	if err := writeAtomic(dir, persistBundle, func(w io.Writer) error { _, err := io.Copy(w, r); return err }); err != nil {
		return err
	}
	return writeAtomic(dir, persistMeta, func(w io.Writer) error { return json.NewEncoder(w).Encode(meta{ETag: etag}) })
}

func writeAtomic(dir, name string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // a no-op after the rename
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, name))
}

// loadPersisted installs the last good bundle. It is read and verified again, like a
// download: a file changed on disk is refused.
func (s *Source) loadPersisted(ctx context.Context) {
	p := filepath.Join(s.o.Bundle.PersistDir, persistBundle)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		s.log.Warn("persisted policy bundle not read", "error", err)
		return
	}
	defer f.Close()
	b, err := bundle.NewCustomReader(bundle.NewTarballLoaderWithBaseURL(f, "")).
		WithBundleVerificationConfig(s.vc).WithSizeLimitBytes(maxBundleBytes).Read()
	if err != nil {
		s.o.Engine.Rejected()
		s.log.Error("persisted policy bundle rejected", "error", err, "file", p)
		return
	}
	rev, err := s.o.Engine.Install(ctx, &b, p)
	if err != nil {
		s.log.Error("persisted policy bundle rejected", "error", err, "file", p)
		return
	}
	var m meta
	if raw, err := os.ReadFile(filepath.Join(s.o.Bundle.PersistDir, persistMeta)); err == nil {
		_ = json.Unmarshal(raw, &m)
	}
	// The server answers 304 when the persisted bundle is still current.
	s.dl.SetCache(m.ETag)
	s.installed(rev, m.ETag, "persisted")
	s.log.Info("policy bundle restored from disk", "file", p, "revision", rev.ID, "etag", m.ETag)
}
