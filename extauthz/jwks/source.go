package jwks

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
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/scopegate/scopegate/internal/backoff"
	"github.com/scopegate/scopegate/internal/oauth"
	"github.com/scopegate/scopegate/internal/watch"
)

// ErrNoKeys means the issuer has published no usable key yet (its JWKS was never fetched).
var ErrNoKeys = errors.New("no keys for this issuer yet")

// ErrUnknownKID means the kid is not in the key set, even after a refresh.
var ErrUnknownKID = errors.New("unknown kid")

// ErrRefreshPending means a refresh for an unknown kid was still under way when the
// caller's budget ran out: the kid may yet be published, so it is not called unknown.
var ErrRefreshPending = errors.New("key refresh did not finish within the request's deadline")

// DeadlineMargin is kept back from a caller's deadline when waiting on a key fetch: a Check
// must still verify, evaluate the policy and send its answer before Envoy's ext_authz timeout
// (250ms from our control plane) fires, or Envoy answers for us. 50ms leaves a 250ms Check
// 200ms for the fetch and the rest comfortably for what follows it.
const DeadlineMargin = 50 * time.Millisecond

// Options configure one issuer's key source.
type Options struct {
	Name   string // the configured issuer name, for logs and metrics
	Issuer string // the iss value; discovery reads {Issuer}/.well-known/openid-configuration
	// Exactly one of Discovery, URL and File.
	Discovery bool
	URL       string
	File      string

	RefreshInterval time.Duration
	// UnknownKIDInterval is the least time between two refreshes caused by unknown kids.
	UnknownKIDInterval time.Duration
	FetchTimeout       time.Duration
	MaxBytes           int64
	// RetryMin and RetryMax bound the back-off between attempts while no key set was ever
	// fetched (defaults 500ms and 30s).
	RetryMin, RetryMax time.Duration
	// DeadlineMargin is kept back from a caller's deadline when it waits on a fetch
	// (default DeadlineMargin).
	DeadlineMargin time.Duration

	Client  *http.Client // nil: a client with FetchTimeout and the MaxBytes limit
	Logger  *slog.Logger
	Metrics *Metrics
	// Tracer, when set, traces the refresh an unknown kid triggers, as a child of the
	// Check that waits for it.
	Tracer trace.Tracer
}

// Source is one issuer's keys.
type Source struct {
	opts    Options
	current atomic.Pointer[Set]
	// live is set once unknown-kid refreshes are possible (a URL source after its first fetch).
	live    atomic.Bool
	ref     *refresher
	changed chan struct{} // closed and replaced on every new key set (tests and readiness wait on it)
	mu      sync.Mutex
	log     *slog.Logger
	status  status // guarded by mu
	// attempted is closed when the first fetch attempt has ended; fetchErr is the last
	// attempt's error while no key set was ever fetched (for callers that fail fast, such as
	// `scopegate check --config`, instead of retrying as the service does).
	attempted     chan struct{}
	attemptedOnce sync.Once
	fetchErr      atomic.Pointer[error]
}

// New makes a source; Start begins fetching. A File source is loaded here and fails fast;
// Start then watches it.
func New(opts Options) (*Source, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RetryMin == 0 {
		opts.RetryMin = 500 * time.Millisecond
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = 30 * time.Second
	}
	if opts.DeadlineMargin == 0 {
		opts.DeadlineMargin = DeadlineMargin
	}
	if opts.Client == nil {
		opts.Client = NewHTTPClient(opts.FetchTimeout, opts.MaxBytes)
	}
	s := &Source{opts: opts, changed: make(chan struct{}), attempted: make(chan struct{}), log: opts.Logger.With("issuer", opts.Name),
		ref: newRefresher(opts.UnknownKIDInterval)}
	switch {
	case opts.File != "":
		s.status.origin = opts.File
	case opts.Discovery:
		s.status.origin = safeURL(oauth.DiscoveryURL(opts.Issuer))
	default:
		s.status.origin = safeURL(opts.URL)
	}
	if opts.File != "" {
		set, err := readSetFile(opts.File)
		if err != nil {
			return nil, err
		}
		s.publish(set)
		s.attemptDone(nil)
	}
	return s, nil
}

// Start fetches the key set in the background until ctx ends (a File source: watches the
// file and reloads it on change). It returns at once: a Check that arrives before the first
// fetch succeeds is answered 503 (ErrNoKeys), never allowed.
func (s *Source) Start(ctx context.Context) {
	if s.opts.File != "" {
		s.watchFile(ctx)
		return
	}
	go s.run(ctx)
}

// watchFile reloads the jwks_file whenever it changes on disk: written in place, replaced by
// rename, or swapped through a Kubernetes ConfigMap/Secret "..data" link (see internal/watch).
func (s *Source) watchFile(ctx context.Context) {
	w, err := watch.New(s.log, 0)
	if err != nil {
		s.log.Warn("jwks_file watch not started; a changed file needs a restart", "file", s.opts.File, "error", err)
		return
	}
	wctx, cancel := context.WithCancel(ctx)
	go w.Run(wctx) // closes the watcher when wctx ends
	if err := w.Set([]string{s.opts.File}); err != nil {
		cancel()
		s.log.Warn("jwks_file watch not started; a changed file needs a restart", "file", s.opts.File, "error", err)
		return
	}
	go func() {
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.Changes():
				s.reloadFile()
			}
		}
	}()
}

// reloadFile reads the jwks_file again; a file that can't be read or holds no usable key
// leaves the last good key set in force (logged, counted as a refresh failure).
func (s *Source) reloadFile() {
	set, err := readSetFile(s.opts.File)
	if err != nil {
		s.opts.Metrics.failed(s.opts.Name)
		s.noteError(err)
		s.log.Error("jwks_file reload failed; keeping the last good key set", "error", err)
		return
	}
	s.opts.Metrics.refreshed(s.opts.Name)
	s.publish(set)
	s.log.Info("jwks_file reloaded", "file", s.opts.File, "kids", set.KIDs())
}

func readSetFile(path string) (*Set, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwks_file: %w", err)
	}
	set, err := parseSet(raw)
	if err != nil {
		return nil, fmt.Errorf("jwks_file %s: %w", path, err)
	}
	return set, nil
}

// Current is the key set in force (nil before the first successful fetch).
func (s *Source) Current() *Set { return s.current.Load() }

// Ready reports whether the issuer has keys.
func (s *Source) Ready() bool { return s.Current().Len() > 0 }

// Changed returns a channel closed at the next key-set change.
func (s *Source) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// FirstAttempt is closed once the first fetch has succeeded or failed; Err then says why it
// failed.
func (s *Source) FirstAttempt() <-chan struct{} { return s.attempted }

// Err is the error of the last fetch attempt while the source has never had keys (the URL
// and the cause), nil once a key set was fetched.
func (s *Source) Err() error {
	if p := s.fetchErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *Source) attemptDone(err error) {
	if err == nil {
		s.fetchErr.Store(nil)
	} else {
		s.fetchErr.Store(&err)
	}
	s.attemptedOnce.Do(func() { close(s.attempted) })
}

// Name is the issuer's configured name.
func (s *Source) Name() string { return s.opts.Name }

func (s *Source) publish(set *Set) {
	now := time.Now()
	s.current.Store(set)
	s.mu.Lock()
	s.status.fetchedAt, s.status.lastErr = now, ""
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.opts.Metrics.keys(s.opts.Name, set.Len(), now)
}

// Lookup returns the key for kid. A kid not in the set asks for a refresh (see refresher):
// when one is under way or may start now, the caller waits for it at most until its deadline
// less DeadlineMargin (with no deadline, as long as the fetch takes: FetchTimeout), then gets
// ErrRefreshPending while the refresh goes on in the background for later requests. While
// unknown_kid_interval holds refreshes back and none is under way, the kid is refused at once
// (ErrUnknownKID) and the refresh it asked for runs as soon as the interval allows, so a
// newly published key verifies within one interval plus one fetch. alg is not needed to find
// the key; the caller checks the key against it.
func (s *Source) Lookup(ctx context.Context, kid, alg string) (*Key, error) {
	set := s.Current()
	if k := set.Get(kid); k != nil {
		return k, nil
	}
	if !s.live.Load() {
		if set.Len() == 0 {
			return nil, ErrNoKeys
		}
		return nil, fmt.Errorf("%w %q", ErrUnknownKID, kid)
	}
	s.opts.Metrics.unknownKIDLookup(s.opts.Name)
	rd := s.ref.request(kid)
	if rd == nil {
		return nil, fmt.Errorf("%w %q (refresh rate-limited by unknown_kid_interval)", ErrUnknownKID, kid)
	}
	if t := s.opts.Tracer; t != nil && trace.SpanFromContext(ctx).IsRecording() {
		var span trace.Span
		ctx, span = t.Start(ctx, "scopegate.jwks_fetch", trace.WithAttributes(attribute.String("scopegate.issuer", s.opts.Name)))
		defer span.End()
	}
	var budget <-chan time.Time
	if deadline, ok := ctx.Deadline(); ok {
		left := time.Until(deadline) - s.opts.DeadlineMargin
		if left <= 0 {
			return nil, fmt.Errorf("%w (kid %q)", ErrRefreshPending, kid)
		}
		t := time.NewTimer(left)
		defer t.Stop()
		budget = t.C
	}
	select {
	case <-rd.done:
	case <-budget:
		return nil, fmt.Errorf("%w (kid %q)", ErrRefreshPending, kid)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w (kid %q): %w", ErrRefreshPending, kid, ctx.Err())
	}
	if k := s.Current().Get(kid); k != nil {
		return k, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownKID, kid)
}

// run obtains the JWKS URL (discovery) and the first key set, retrying with back-off, then
// refreshes the set until ctx ends.
func (s *Source) run(ctx context.Context) {
	var u string
	var report backoff.Reporter
	backoff.Retry(ctx, s.opts.RetryMin, s.opts.RetryMax, func() error {
		var err error
		u, err = s.connect(ctx)
		if ctx.Err() == nil {
			s.attemptDone(err)
		}
		return err
	}, func(err error, wait time.Duration) {
		s.opts.Metrics.failed(s.opts.Name)
		s.noteError(err)
		s.log.Log(ctx, report.Level(err), "jwks fetch failed; will retry", "error", err, "retry_in", wait.String())
	})
	if ctx.Err() != nil {
		return
	}
	s.ref.loop(ctx, s.opts.RefreshInterval, s.opts.RetryMin, s.opts.RetryMax,
		func(why trigger) error { return s.refresh(ctx, u, why) },
		func(kid string) bool { return s.Current().Get(kid) != nil })
}

// connect makes the first fetch (after discovery) and returns the JWKS URL.
func (s *Source) connect(ctx context.Context) (string, error) {
	u := s.opts.URL
	if s.opts.Discovery {
		var err error
		if u, err = s.discover(ctx); err != nil {
			return "", err
		}
	}
	s.setOrigin(safeURL(u))
	set, err := s.fetch(ctx, u)
	if err != nil {
		return "", err
	}
	s.opts.Metrics.refreshed(s.opts.Name)
	// Unknown-kid refreshes are possible from here on: a Check that sees keys can also ask
	// for a key rotated in since.
	s.live.Store(true)
	// Whoever sees the keys sees no error, and whoever the first attempt wakes sees the keys.
	s.fetchErr.Store(nil)
	s.publish(set)
	s.attemptDone(nil)
	s.log.Info("jwks loaded", "url", safeURL(u), "kids", set.KIDs())
	return u, nil
}

// refresh fetches the key set again; a failure keeps the set in force.
func (s *Source) refresh(ctx context.Context, u string, why trigger) error {
	if why == unknownKID {
		s.opts.Metrics.unknownKID(s.opts.Name)
	}
	set, err := s.fetch(ctx, u)
	if err != nil {
		s.opts.Metrics.failed(s.opts.Name)
		s.noteError(err)
		s.log.Warn("jwks refresh failed; keeping the last good key set", "url", safeURL(u), "trigger", why.String(), "error", err)
		return err
	}
	s.opts.Metrics.refreshed(s.opts.Name)
	old := s.Current()
	s.publish(set)
	if !old.Same(set) {
		s.log.Info("jwks key set changed", "kids", set.KIDs(), "previous", old.KIDs(), "trigger", why.String())
	}
	return nil
}

func (t trigger) String() string {
	if t == unknownKID {
		return "unknown_kid"
	}
	return "periodic"
}

// fetch reads and parses the key set at u within FetchTimeout. Errors name the URL (without
// credentials or query) and the cause, never the body.
func (s *Source) fetch(ctx context.Context, u string) (*Set, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.FetchTimeout)
	defer cancel()
	at := safeURL(u)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", at, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // it repeats the URL, with its query
		}
		return nil, fmt.Errorf("jwks %s: %w", at, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks %s: HTTP status %d", at, resp.StatusCode)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", at, err)
	}
	set, err := parseSet(raw)
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", at, err)
	}
	return set, nil
}

// safeURL is u as logs and /readyz may show it: no password, and no query (which some
// providers use for API keys).
func safeURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	if p.RawQuery != "" || p.ForceQuery {
		p.RawQuery, p.ForceQuery = "…", false
	}
	p.Fragment, p.RawFragment = "", ""
	return p.Redacted()
}

// discover reads jwks_uri from the issuer's OpenID configuration; the document's issuer
// must be the configured one exactly (OpenID Connect Discovery §4.3).
func (s *Source) discover(ctx context.Context) (string, error) {
	doc, u, err := oauth.FetchDiscovery(ctx, s.opts.Client, s.opts.Issuer, s.opts.FetchTimeout)
	if err != nil {
		return "", err
	}
	if !oauth.HTTPURL(doc.JWKSURI) {
		return "", fmt.Errorf("discovery %s: jwks_uri %q is not an http(s) URL", u, doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}

func parseSet(raw []byte) (*Set, error) {
	var m jwkset.JWKSMarshal
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	var keys []jwkset.JWK
	for _, km := range m.Keys {
		k, err := jwkset.NewJWKFromMarshal(km, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if errors.Is(err, jwkset.ErrUnsupportedKey) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", km.KID, err)
		}
		keys = append(keys, k)
	}
	return newSet(keys)
}

// NewHTTPClient is a client for key fetches: bounded in time and in response size.
func NewHTTPClient(timeout time.Duration, maxBytes int64) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: &limitedTransport{base: http.DefaultTransport, max: maxBytes},
	}
}

// ErrTooLarge is returned when a JWKS or discovery response exceeds the size limit.
var ErrTooLarge = errors.New("response exceeds the size limit")

type limitedTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || t.max <= 0 {
		return resp, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %w (%d > %d bytes)", req.URL.Redacted(), ErrTooLarge, resp.ContentLength, t.max)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.max}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte than allowed tells a body at the limit from one beyond it.
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, ErrTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
