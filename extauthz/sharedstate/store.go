// Package sharedstate keeps the state every authz replica must agree on in a Redis-protocol
// store (Valkey or Redis; a single server, a proxy, or a Redis Cluster): the DPoP proofs
// already used (replay.go) and introspection answers (answers.go). Each replica's memory
// stays a cache in front of it.
//
// The store is reached with valkey-go, which pipelines concurrent commands on a few shared
// connections: no connection per Check. When the store fails, the Store says so at once
// instead of making every Check wait: after a few consecutive failures it is marked down, and
// calls fail fast (ErrUnavailable) until a background PING finds it again. What a caller does
// then is its own choice (DPoP: refuse with 503, or decide locally; introspection: ask the IdP).
//
// Nothing a client sent reaches the store in the clear: replay keys hold the proof key's
// thumbprint and a hash of the jti; answer keys are a keyed hash of the token and answers are
// sealed (AES-256-GCM) with a key the store never sees.
package sharedstate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valkey-io/valkey-go"
)

// ErrUnavailable wraps every failure of the store: not connected, down, a timeout, an error
// reply. Callers fall back or refuse; they never treat it as an answer.
var ErrUnavailable = errors.New("shared state store unavailable")

// UnixPrefix marks an address that is a Unix socket path (unix:///run/valkey/valkey.sock).
const UnixPrefix = "unix://"

// Defaults.
const (
	DefaultDialTimeout   = time.Second
	DefaultTimeout       = 100 * time.Millisecond
	DefaultProbeInterval = 500 * time.Millisecond
	DefaultClockSkew     = 2 * time.Second
	// DeadlineMargin is kept back from a caller's deadline: the Check must still answer
	// Envoy after the store call gave up.
	DeadlineMargin = 50 * time.Millisecond
	// failuresToDown consecutive failures mark the store down (fail fast until a PING works).
	failuresToDown = 3
)

// Options configure a Store. Runtime values only: files are read by whoever builds them.
type Options struct {
	// Addresses: one is a single server or a proxy in front of one; several are seeds of a
	// Redis Cluster (keys carry a hash tag so one key's entries stay on one shard). One
	// unix:///path address is a server on a Unix socket.
	Addresses []string
	Username  string
	// Password returns the password for each new connection (nil: none), so a rotated
	// Secret is used on the next reconnect without a restart.
	Password    func() (string, error)
	DB          int
	KeyPrefix   string
	DialTimeout time.Duration // 0: DefaultDialTimeout
	// Timeout bounds one command (and is further bounded by the caller's deadline less
	// DeadlineMargin). 0: DefaultTimeout.
	Timeout time.Duration
	TLS     *tls.Config // nil: plaintext
	// AnswerKey (at least 32 bytes) keys and seals introspection answers; nil: Answers is nil
	// (answers are not shared).
	AnswerKey []byte
	// LocalFallback records that callers fall back to their local state while the store is
	// down (on_unavailable: local): reported by Status, counted, logged.
	LocalFallback bool
	// ProbeInterval is how often a down store is PINGed (0: DefaultProbeInterval).
	ProbeInterval time.Duration
	// ClockSkew is added to every replay entry's life: replicas' clocks differ a little, and
	// a proof must be remembered as long as any replica could accept it (0: DefaultClockSkew).
	ClockSkew time.Duration
	Logger    *slog.Logger          // nil: discard
	Registry  prometheus.Registerer // nil: metrics kept but not exported
}

// Store is a connection to the shared state store.
type Store struct {
	o       Options
	m       *metrics
	client  atomic.Pointer[valkey.Client]
	up      atomic.Bool
	fails   atomic.Int32
	wake    chan struct{} // a failure asks the prober to look now
	answers *Answers
	cancel  context.CancelFunc
	done    chan struct{}

	mu      sync.Mutex
	state   string // connecting, up, down
	since   time.Time
	lastErr string
	changed chan struct{} // closed (and replaced) when state changes
}

// New checks o and returns a Store that is not connected yet: Start connects in the
// background, so a store that is down at start does not keep authz from serving.
func New(o Options) (*Store, error) {
	if len(o.Addresses) == 0 {
		return nil, errors.New("shared state: at least one address is required")
	}
	for _, a := range o.Addresses {
		if p, ok := strings.CutPrefix(a, UnixPrefix); ok {
			if len(o.Addresses) != 1 || !strings.HasPrefix(p, "/") {
				return nil, fmt.Errorf("shared state: %q: a Unix socket is the only address and its path is absolute", a)
			}
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("shared state: address %q is not host:port", a)
		}
	}
	if len(o.Addresses) > 1 && o.DB != 0 {
		return nil, errors.New("shared state: Redis Cluster has database 0 only")
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	if o.ClockSkew <= 0 {
		o.ClockSkew = DefaultClockSkew
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{o: o, m: newMetrics(o.Registry), wake: make(chan struct{}, 1), state: "connecting", since: time.Now(),
		changed: make(chan struct{})}
	s.m.up.Set(0)
	if o.AnswerKey != nil {
		a, err := newAnswers(s, o.AnswerKey)
		if err != nil {
			return nil, err
		}
		s.answers = a
	}
	return s, nil
}

// Answers is the shared introspection answers, nil without an AnswerKey.
func (s *Store) Answers() *Answers { return s.answers }

// Start connects in the background and keeps watching the store; when ctx ends (or Close),
// the connections are closed.
func (s *Store) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go s.watch(ctx)
}

// Close stops watching and closes the connections (Start must have been called).
func (s *Store) Close() {
	s.cancel()
	<-s.done
}

// watch connects, then PINGs whenever the store is down until it answers again.
func (s *Store) watch(ctx context.Context) {
	defer func() {
		s.up.Store(false)
		if c := s.client.Load(); c != nil {
			(*c).Close()
		}
		close(s.done)
	}()
	t := time.NewTicker(s.o.ProbeInterval)
	defer t.Stop()
	for {
		if !s.up.Load() {
			s.probe(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// probe connects a new client and PINGs through it; when it answers, it replaces the old
// one, so no connection broken while the store was down is used again (its first command
// would fail).
func (s *Store) probe(ctx context.Context) {
	nc, err := valkey.NewClient(s.clientOption())
	if err != nil {
		if nc != nil {
			nc.Close()
		}
		s.setDown(err)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, s.o.Timeout+s.o.DialTimeout)
	defer cancel()
	start := time.Now()
	err = nc.Do(pctx, nc.B().Ping().Build()).Error()
	s.m.observe(opPing, time.Since(start), err)
	if err != nil {
		nc.Close()
		s.setDown(err)
		return
	}
	if old := s.client.Swap(&nc); old != nil {
		(*old).Close()
	}
	s.setUp()
}

func (s *Store) clientOption() valkey.ClientOption {
	o := valkey.ClientOption{
		InitAddress: s.o.Addresses, Username: s.o.Username, SelectDB: s.o.DB, TLSConfig: s.o.TLS,
		Dialer:            net.Dialer{Timeout: s.o.DialTimeout, KeepAlive: 5 * time.Second},
		ForceSingleClient: len(s.o.Addresses) == 1,
		DisableCache:      true, // no client-side caching: every read is the store's answer
		DisableRetry:      true, // a failure is reported at once; the caller falls back or refuses
		ConnWriteTimeout:  max(s.o.Timeout*10, time.Second),
		ClientName:        "scopegate-authz",
		// Small buffers: commands and answers are small, and a fleet has many replicas.
		ReadBufferEachConn: 64 << 10, WriteBufferEachConn: 64 << 10,
	}
	if path, ok := strings.CutPrefix(s.o.Addresses[0], UnixPrefix); ok {
		o.InitAddress = []string{path}
		o.DialCtxFn = func(ctx context.Context, _ string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}
	}
	if s.o.Password != nil {
		o.AuthCredentialsFn = func(valkey.AuthCredentialsContext) (valkey.AuthCredentials, error) {
			p, err := s.o.Password()
			return valkey.AuthCredentials{Username: s.o.Username, Password: p}, err
		}
	}
	return o
}

func (s *Store) setUp() {
	s.fails.Store(0)
	if s.up.Swap(true) {
		return
	}
	s.m.up.Set(1)
	s.mu.Lock()
	was := s.state
	s.state, s.since, s.lastErr = "up", time.Now(), ""
	s.notifyLocked()
	s.mu.Unlock()
	if was == "down" {
		s.o.Logger.Info("shared state store reachable again", "addresses", s.o.Addresses)
	} else {
		s.o.Logger.Info("shared state store connected", "addresses", s.o.Addresses)
	}
}

func (s *Store) setDown(err error) {
	wasUp := s.up.Swap(false)
	s.m.up.Set(0)
	s.mu.Lock()
	first := s.state != "down"
	if first {
		s.state, s.since = "down", time.Now()
		s.notifyLocked()
	}
	s.lastErr = err.Error()
	s.mu.Unlock()
	if wasUp || first {
		if s.o.LocalFallback {
			s.o.Logger.Warn("shared state store unavailable: DPoP replay protection is per replica until it is back (on_unavailable: local)",
				"addresses", s.o.Addresses, "error", err)
		} else {
			s.o.Logger.Warn("shared state store unavailable: DPoP Checks are refused (503) until it is back",
				"addresses", s.o.Addresses, "error", err)
		}
	}
}

// failed counts a failed command; a few in a row mark the store down and wake the prober.
func (s *Store) failed(err error) {
	if s.fails.Add(1) >= failuresToDown && s.up.Load() {
		s.setDown(err)
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *Store) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Changed is closed when the store next goes up or down.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Up reports whether the store answered its last commands.
func (s *Store) Up() bool { return s.up.Load() }

// Status is the store's state for /readyz.
type Status struct {
	Addresses []string `json:"addresses"`
	Cluster   bool     `json:"cluster"`
	// State is connecting, up or down.
	State string    `json:"state"`
	Since time.Time `json:"since"`
	// OnUnavailable is what DPoP Checks do while the store is down: fail_closed (503) or local.
	OnUnavailable string `json:"on_unavailable"`
	// DPoPReplay says where proofs are recorded right now: shared, local (store down,
	// on_unavailable: local) or refused (store down, 503).
	DPoPReplay string `json:"dpop_replay"`
	// Introspection: shared (answers in the store), local (store down: each replica asks the
	// IdP) or off (no answer key).
	Introspection string `json:"introspection"`
	LastError     string `json:"last_error,omitempty"`
}

// Status reports the store's state.
func (s *Store) Status() Status {
	s.mu.Lock()
	st := Status{Addresses: s.o.Addresses, Cluster: len(s.o.Addresses) > 1, State: s.state, Since: s.since, LastError: s.lastErr}
	s.mu.Unlock()
	st.OnUnavailable, st.DPoPReplay, st.Introspection = "fail_closed", "shared", "shared"
	if s.o.LocalFallback {
		st.OnUnavailable = "local"
	}
	if st.State != "up" {
		st.DPoPReplay, st.Introspection = "refused", "local"
		if s.o.LocalFallback {
			st.DPoPReplay = "local"
		}
	}
	if s.answers == nil {
		st.Introspection = "off"
	}
	return st
}

// Ping measures one round trip to the store (PING).
func (s *Store) Ping(ctx context.Context) (time.Duration, error) {
	c, ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	start := time.Now()
	err = c.Do(ctx, c.B().Ping().Build()).Error()
	d := time.Since(start)
	s.m.observe(opPing, d, err)
	if err != nil {
		s.failed(err)
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return d, nil
}

// begin returns the client and a context bounded by Timeout and by ctx's deadline less
// DeadlineMargin, or ErrUnavailable at once when the store is down or no time is left.
func (s *Store) begin(ctx context.Context) (valkey.Client, context.Context, context.CancelFunc, error) {
	c := s.client.Load()
	if c == nil || !s.up.Load() {
		return nil, nil, nil, fmt.Errorf("%w: %s", ErrUnavailable, s.reason())
	}
	budget := s.o.Timeout
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl)-DeadlineMargin)
		if budget <= 0 {
			return nil, nil, nil, fmt.Errorf("%w: no time left before the deadline", ErrUnavailable)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, budget)
	return *c, cctx, cancel, nil
}

func (s *Store) reason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastErr != "" {
		return s.state + ": " + s.lastErr
	}
	return s.state
}

// key builds prefix + parts.
func (s *Store) key(parts ...string) string {
	var b strings.Builder
	n := len(s.o.KeyPrefix)
	for _, p := range parts {
		n += len(p)
	}
	b.Grow(n)
	b.WriteString(s.o.KeyPrefix)
	for _, p := range parts {
		b.WriteString(p)
	}
	return b.String()
}
