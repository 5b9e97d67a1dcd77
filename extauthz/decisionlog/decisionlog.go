// Package decisionlog writes one JSON line per authorization decision: what was asked, who
// asked, what was decided and why, and (WithInput) the policy input, so that a candidate
// policy can be replayed against real traffic (`scopegate policy impact`).
//
// It never carries a token, a DPoP proof, an Authorization header or cookies: the input's
// headers leave out those no policy sees and every header of the hidden list
// (DefaultHiddenHeaders plus decision_log.hidden_headers), whatever the case of its name, and
// any header whose value holds a hidden header's value; no other field can hold them.
//
// A Check pays for its line only: the line is encoded outside any lock (the input straight
// from the request, the token's part once per token) and appended to a buffer that a
// background goroutine writes out, so a slow stdout never holds a Check. When the writer
// falls more than MaxPending bytes behind, lines are dropped and counted (Dropped), never
// waited for.
package decisionlog

import (
	crand "crypto/rand"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/jsonenc"
)

// Record is one decision.
type Record struct {
	Time     time.Time
	Route    string
	Method   string
	Path     string // without the query string
	Issuer   string
	Subject  string
	ClientID string
	KID      string
	JTI      string
	Scopes   string
	Allow    bool
	Shadow   bool // a deny that shadow mode let through
	Status   int
	Reason   string
	// Detail says, for operators, what differs on a refused token (expected vs actual
	// claim values, never the token itself); empty otherwise.
	Detail        string
	MissingScopes []string
	Revision      string
	Duration      time.Duration
	// RequestID is Envoy's request id (x-request-id), for finding the request elsewhere.
	RequestID string
	// StepUp is what a step-up requirement asked and what the token had (when Applied).
	StepUp StepUp
	// View and Identity are what the policy input is built from, set once the token is
	// verified; the input is built only for a line that is written with WithInput.
	View     policy.View // a copy: a pointer to the caller's would move it to the heap
	Identity *token.Identity
	// TokenDoc, when set, gives the token's part of the input, memoised per token (the
	// Check service keeps it with the token); otherwise it is encoded for each line.
	TokenDoc TokenDoc
}

// TokenDoc memoises input.token as JSON (policy.AppendTokenJSON) for one token.
type TokenDoc interface {
	TokenJSON(id *token.Identity) []byte
}

// DefaultHiddenHeaders are the request headers no line ever holds: credentials and DPoP
// proofs (a logged proof with its token is a replay on another replica).
// decision_log.hidden_headers adds to them.
var DefaultHiddenHeaders = []string{"authorization", "cookie", "proxy-authorization", "dpop"}

// MaxPending bounds the bytes of lines waiting for the writer; beyond it lines are dropped.
const MaxPending = 8 << 20

// flushSize is how much buffered output wakes the writer before its timer does.
const flushSize = 64 << 10

// Logger writes records; the zero of SampleRate logs no allowed decisions, 1 logs all.
// Denials (and shadow would-be denials) are always logged.
type Logger struct {
	w          io.Writer
	sampleRate float64
	prefix     string
	seq        atomic.Uint64
	input      bool
	inputRate  float64 // of allowed decisions' lines, the fraction that carry the input
	hide       policy.HeaderFilter
	lines      sync.Pool // *[]byte: a line is encoded here, outside the lock

	mu       sync.Mutex
	pending  []byte // lines the writer has not taken yet
	woken    bool   // a wake-up is outstanding
	closed   bool
	wake     chan struct{}
	done     chan struct{}
	stopped  sync.WaitGroup
	dropped  atomic.Uint64
	writeErr atomic.Uint64
	lastErr  atomic.Pointer[error]
}

// New returns a logger writing to w from a background goroutine, every flushEvery (when
// positive), whenever 64 KiB are waiting, and on Close.
func New(w io.Writer, sampleRate float64, flushEvery time.Duration) *Logger {
	var p [6]byte
	_, _ = crand.Read(p[:])
	l := &Logger{w: w, sampleRate: sampleRate, inputRate: 1, prefix: hex.EncodeToString(p[:]), wake: make(chan struct{}, 1), done: make(chan struct{}),
		hide: policy.HeaderFilter{Names: DefaultHiddenHeaders}}
	l.lines.New = func() any { b := make([]byte, 0, 2048); return &b }
	l.stopped.Add(1)
	go l.writer(flushEvery)
	return l
}

// WithInput makes the lines of verified requests carry the policy input ("input"): every
// field a policy can read (policy.AllFields), whatever the revision in force reads, so a
// candidate that reads more can be replayed too; for allowed decisions, subject to
// WithInputSampleRate. Call it before the first Log.
func (l *Logger) WithInput() *Logger {
	if l != nil {
		l.input = true
	}
	return l
}

// WithInputSampleRate makes only that fraction of the allowed decisions' lines carry the input
// (WithInput); a refusal's line (and a shadow would-be refusal's) always carries it. The
// default is 1: every line.
func (l *Logger) WithInputSampleRate(r float64) *Logger {
	if l != nil {
		l.inputRate = r
	}
	return l
}

// withInput reports whether r's line carries the input.
func (l *Logger) withInput(r *Record) bool {
	if !l.input || r.Identity == nil || r.View.HTTP == nil {
		return false
	}
	return !r.Allow || r.Shadow || l.inputRate >= 1 || (l.inputRate > 0 && rand.Float64() < l.inputRate)
}

// WithHiddenHeaders adds header names to the hidden list (DefaultHiddenHeaders). Call it
// before the first Log.
func (l *Logger) WithHiddenHeaders(names ...string) *Logger {
	if l != nil && len(names) > 0 {
		l.hide.Names = append(append([]string(nil), l.hide.Names...), names...)
	}
	return l
}

// Dropped is the number of lines dropped because the writer was MaxPending behind.
func (l *Logger) Dropped() uint64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

// WriteErrors is the number of failed writes (their lines are lost).
func (l *Logger) WriteErrors() uint64 {
	if l == nil {
		return 0
	}
	return l.writeErr.Load()
}

func (l *Logger) writer(every time.Duration) {
	defer l.stopped.Done()
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	var spare []byte
	for {
		final := false
		select {
		case <-l.wake:
		case <-tick:
		case <-l.done:
			final = true
		}
		l.mu.Lock()
		buf := l.pending
		l.pending, l.woken = spare[:0], false
		l.mu.Unlock()
		if len(buf) > 0 {
			if _, err := l.w.Write(buf); err != nil {
				l.writeErr.Add(1)
				l.lastErr.Store(&err)
			}
		}
		spare = buf
		if final {
			return
		}
	}
}

// Close writes what is pending and stops the writer; it returns the last write error, if
// any. Lines logged after Close are dropped.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.done)
	l.stopped.Wait()
	if err := l.lastErr.Load(); err != nil {
		return *err
	}
	return nil
}

// Sampled reports whether an allowed decision should be logged.
func (l *Logger) Sampled() bool {
	if l == nil || l.sampleRate <= 0 {
		return false
	}
	return l.sampleRate >= 1 || rand.Float64() < l.sampleRate
}

// Log writes r as one JSON line; allowed decisions are subject to sampling.
func (l *Logger) Log(r *Record) {
	if l == nil || (r.Allow && !r.Shadow && !l.Sampled()) {
		return
	}
	bp := l.lines.Get().(*[]byte)
	b := l.appendLine((*bp)[:0], r)
	l.mu.Lock()
	switch {
	case l.closed || len(l.pending)+len(b) > MaxPending:
		l.dropped.Add(1)
	default:
		l.pending = append(l.pending, b...)
		if len(l.pending) >= flushSize && !l.woken {
			l.woken = true
			select {
			case l.wake <- struct{}{}:
			default:
			}
		}
	}
	l.mu.Unlock()
	if cap(b) <= 64<<10 { // an outsized line's buffer is not kept
		*bp = b
		l.lines.Put(bp)
	}
}

func (l *Logger) appendLine(b []byte, r *Record) []byte {
	b = append(b, `{"time":"`...)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","decision_id":"`...)
	b = append(b, l.prefix...)
	b = append(b, '-')
	b = strconv.AppendUint(b, l.seq.Add(1), 36)
	b = append(b, '"')
	b = field(b, "request_id", r.RequestID)
	b = field(b, "route", r.Route)
	b = field(b, "method", r.Method)
	b = field(b, "path", r.Path)
	b = field(b, "issuer", r.Issuer)
	b = field(b, "sub", r.Subject)
	b = field(b, "client_id", r.ClientID)
	b = field(b, "kid", r.KID)
	b = field(b, "jti", r.JTI)
	b = field(b, "scopes", r.Scopes)
	b = append(b, `,"allow":`...)
	b = strconv.AppendBool(b, r.Allow)
	if r.Shadow {
		b = append(b, `,"shadow":true`...)
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = field(b, "reason", r.Reason)
	b = field(b, "detail", r.Detail)
	if len(r.MissingScopes) > 0 {
		b = append(b, `,"missing_scopes":`...)
		b = jsonenc.AppendStrings(b, r.MissingScopes)
	}
	if r.StepUp.Applied {
		b = appendStepUp(b, &r.StepUp, r.Identity)
	}
	b = field(b, "policy_revision", r.Revision)
	b = append(b, `,"duration_us":`...)
	b = strconv.AppendInt(b, r.Duration.Microseconds(), 10)
	if l.withInput(r) {
		b = append(b, `,"input":`...)
		var tok []byte
		if r.TokenDoc != nil {
			tok = r.TokenDoc.TokenJSON(r.Identity)
		} else {
			tok = policy.AppendTokenJSON(nil, r.Identity)
		}
		b = policy.AppendInputJSON(b, &r.View, tok, &l.hide)
	}
	return append(b, "}\n"...)
}

func field(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return jsonenc.AppendString(b, v)
}
