package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/scopegate/scopegate/internal/backoff"
	"github.com/scopegate/scopegate/internal/discovery"
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
	kf      atomic.Pointer[keyfunc.Keyfunc]
	misses  singleflight.Group
	baseCtx context.Context
	changed chan struct{} // closed and replaced on every new key set (tests and readiness wait on it)
	mu      sync.Mutex
	log     *slog.Logger
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
	s := &Source{opts: opts, changed: make(chan struct{}), attempted: make(chan struct{}), log: opts.Logger.With("issuer", opts.Name)}
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
	s.baseCtx = ctx
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
	s.current.Store(set)
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.opts.Metrics.keys(s.opts.Name, set.Len())
}

// Lookup returns the key for kid. A kid not in the set triggers one refresh (rate-limited
// by UnknownKIDInterval, shared by every concurrent miss on that kid) so that a key the IdP
// just rotated in verifies on its first token. The caller waits for it at most until its
// deadline less DeadlineMargin (with no deadline, as long as the fetch takes: FetchTimeout),
// then gets ErrRefreshPending; the refresh itself goes on for later requests.
func (s *Source) Lookup(ctx context.Context, kid, alg string) (*Key, error) {
	set := s.Current()
	if k := set.Get(kid); k != nil {
		return k, nil
	}
	kf := s.kf.Load()
	if kf == nil {
		if set.Len() == 0 {
			return nil, ErrNoKeys
		}
		return nil, fmt.Errorf("%w %q", ErrUnknownKID, kid)
	}
	if t := s.opts.Tracer; t != nil && trace.SpanFromContext(ctx).IsRecording() {
		var span trace.Span
		ctx, span = t.Start(ctx, "scopegate.jwks_fetch", trace.WithAttributes(attribute.String("scopegate.issuer", s.opts.Name)))
		defer span.End()
	}
	ch := s.misses.DoChan(kid, func() (any, error) {
		// Detached from the first caller's context, so its deadline does not fail the others;
		// bounded by the fetch timeout.
		fctx, cancel := context.WithTimeout(s.baseCtx, s.opts.FetchTimeout)
		defer cancel()
		s.opts.Metrics.unknownKID(s.opts.Name)
		// keyfunc reads only kid and alg of the token to decide what to fetch.
		_, err := (*kf).KeyfuncCtx(fctx)(&jwt.Token{Header: map[string]any{"kid": kid, "alg": alg}})
		return nil, err
	})
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
	case <-ch:
	case <-budget:
		return nil, fmt.Errorf("%w (kid %q)", ErrRefreshPending, kid)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w (kid %q): %w", ErrRefreshPending, kid, ctx.Err())
	}
	if k := s.Current().Get(kid); k != nil {
		return k, nil
	}
	if s.Current().Len() == 0 {
		return nil, ErrNoKeys
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownKID, kid)
}

// run obtains the JWKS URL (discovery) and the first key set, retrying with back-off, then
// hands refreshing over to jwkset's refresh goroutine.
func (s *Source) run(ctx context.Context) {
	backoff.Retry(ctx, s.opts.RetryMin, s.opts.RetryMax, func() error {
		err := s.connect(ctx)
		if ctx.Err() == nil {
			s.attemptDone(err)
		}
		return err
	}, func(err error, wait time.Duration) {
		s.opts.Metrics.failed(s.opts.Name)
		s.log.Warn("jwks fetch failed; will retry", "error", err, "retry_in", wait.String())
	})
}

func (s *Source) connect(ctx context.Context) error {
	u := s.opts.URL
	if s.opts.Discovery {
		var err error
		if u, err = s.discover(ctx); err != nil {
			return err
		}
	}
	// Each attempt has its own context: jwkset starts its refresh goroutine before the first
	// fetch, and a failed attempt must not leave it running.
	actx, cancel := context.WithCancel(ctx)
	store := &observed{MemoryJWKSet: jwkset.NewMemoryStorage(), src: s}
	storage, err := jwkset.NewStorageFromHTTP(u, jwkset.HTTPClientStorageOptions{
		Client:          s.opts.Client,
		Ctx:             actx,
		HTTPTimeout:     s.opts.FetchTimeout,
		RefreshInterval: s.opts.RefreshInterval,
		RefreshErrorHandler: func(_ context.Context, err error) {
			s.opts.Metrics.failed(s.opts.Name)
			s.log.Warn("jwks refresh failed; keeping the last good key set", "url", u, "error", err)
		},
		Storage: store,
		// The first fetch must succeed for the attempt to count; run retries it.
		NoErrorReturnFirstHTTPReq: false,
	})
	if err != nil {
		cancel()
		return fmt.Errorf("jwks %s: %w", u, err)
	}
	client, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs: map[string]jwkset.Storage{u: storage},
		// One unknown-kid refresh per interval, burst 1: a flood of made-up kids costs the IdP
		// at most one request per interval.
		RefreshUnknownKID: rate.NewLimiter(rate.Every(s.opts.UnknownKIDInterval), 1),
	})
	if err != nil {
		cancel()
		return err
	}
	kf, err := keyfunc.New(keyfunc.Options{Ctx: actx, Storage: client, UseWhitelist: []jwkset.USE{jwkset.UseSig}})
	if err != nil {
		cancel()
		return err
	}
	s.kf.Store(&kf)
	// Only now, with unknown-kid refreshes possible, does the first key set become visible.
	store.goLive()
	_ = cancel // not called: the refresh goroutine lives as long as ctx, which ends it
	s.log.Info("jwks loaded", "url", u, "kids", s.Current().KIDs())
	return nil
}

// discover reads jwks_uri from the issuer's OpenID configuration; the document's issuer
// must be the configured one exactly (OpenID Connect Discovery §4.3).
func (s *Source) discover(ctx context.Context) (string, error) {
	doc, u, err := discovery.Fetch(ctx, s.opts.Client, s.opts.Issuer, s.opts.FetchTimeout)
	if err != nil {
		return "", err
	}
	if !discovery.HTTPURL(doc.JWKSURI) {
		return "", fmt.Errorf("discovery %s: jwks_uri %q is not an http(s) URL", u, doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}

// observed is jwkset's storage with a hook on replacement: it refuses an empty or unusable
// key set (the last good one stays) and publishes each accepted one as a snapshot.
//
// jwkset fetches the first set inside NewStorageFromHTTP, before the keyfunc that refreshes
// on unknown kids exists. Publishing it then would let a Check see keys but find no way to
// refresh for a just-rotated kid, so the first set is held until goLive.
type observed struct {
	*jwkset.MemoryJWKSet
	src *Source

	mu    sync.Mutex
	live  bool
	first *Set
}

func (o *observed) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	set, err := newSet(given)
	if err != nil {
		return err
	}
	if err := o.MemoryJWKSet.KeyReplaceAll(ctx, given); err != nil {
		return err
	}
	o.src.opts.Metrics.refreshed(o.src.opts.Name)
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.live {
		o.first = set
		return nil
	}
	o.src.publish(set)
	return nil
}

// goLive publishes the held first set; every later one is published as it arrives.
func (o *observed) goLive() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.live = true
	if o.first != nil {
		o.src.publish(o.first)
		o.first = nil
	}
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
