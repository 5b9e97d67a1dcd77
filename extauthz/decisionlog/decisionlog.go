// Package decisionlog writes one JSON line per authorization decision: what was asked, who
// asked, what was decided and why, and (WithInput) the policy input, so that a candidate
// policy can be replayed against real traffic (`scopegate policy impact`). It never carries
// the token, the Authorization header or cookies: the input is built by policy.BuildInput,
// which leaves them out, and no other field can hold them.
package decisionlog

import (
	"bufio"
	crand "crypto/rand"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/token"
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
}

// Logger writes records; the zero of SampleRate logs no allowed decisions, 1 logs all.
// Denials (and shadow would-be denials) are always logged.
type Logger struct {
	mu         sync.Mutex
	w          *bufio.Writer
	sampleRate float64
	prefix     string
	seq        atomic.Uint64
	buf        []byte
	input      bool
	done       chan struct{}
	stopped    sync.WaitGroup
}

// New returns a logger writing to w, flushed every flushEvery (and on Close).
func New(w io.Writer, sampleRate float64, flushEvery time.Duration) *Logger {
	var p [6]byte
	_, _ = crand.Read(p[:])
	l := &Logger{w: bufio.NewWriterSize(w, 64<<10), sampleRate: sampleRate, prefix: hex.EncodeToString(p[:]), done: make(chan struct{})}
	if flushEvery > 0 {
		l.stopped.Add(1)
		go l.flusher(flushEvery)
	}
	return l
}

func (l *Logger) flusher(every time.Duration) {
	defer l.stopped.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
			l.mu.Lock()
			_ = l.w.Flush()
			l.mu.Unlock()
		}
	}
}

// WithInput makes every line of a verified request carry the policy input ("input"): every
// field a policy can read (policy.AllFields), whatever the revision in force reads, so a
// candidate that reads more can be replayed too. Call it before the first Log.
func (l *Logger) WithInput() *Logger {
	if l != nil {
		l.input = true
	}
	return l
}

// Close flushes and stops the flusher.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	close(l.done)
	l.stopped.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Flush()
}

// NextID returns a decision id unique within this process (random prefix + sequence).
func (l *Logger) NextID() string {
	return l.prefix + "-" + strconv.FormatUint(l.seq.Add(1), 36)
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
	id := l.NextID()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf[:0]
	b = append(b, `{"time":"`...)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","decision_id":"`...)
	b = append(b, id...)
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
		b = append(b, `,"missing_scopes":[`...)
		for i, s := range r.MissingScopes {
			if i > 0 {
				b = append(b, ',')
			}
			b = quote(b, s)
		}
		b = append(b, ']')
	}
	if r.StepUp.Applied {
		b = appendStepUp(b, &r.StepUp, r.Identity)
	}
	b = field(b, "policy_revision", r.Revision)
	b = append(b, `,"duration_us":`...)
	b = strconv.AppendInt(b, r.Duration.Microseconds(), 10)
	if l.input && r.Identity != nil && r.View.HTTP != nil {
		b = appendInput(b, r)
	}
	b = append(b, "}\n"...)
	_, _ = l.w.Write(b)
	l.buf = b
}

func field(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return quote(b, v)
}

const hexDigits = "0123456789abcdef"

// quote appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func quote(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// appendInput appends ,"input":{...}: the input policy.BuildInput makes for the request
// (credentials are never in it), written straight from OPA's values. Building it costs
// allocations, paid only for lines written (BenchmarkLog).
func appendInput(b []byte, r *Record) []byte {
	in := policy.BuildInput(&r.View, policy.AllFields(), policy.TokenTerm(r.Identity))
	b = append(b, `,"input":`...)
	return appendValue(b, in)
}

// appendValue appends an input value as JSON. The input holds objects with string keys,
// arrays, strings, numbers, booleans and null (claims are JSON to begin with); anything
// else would be a bug, written as null.
func appendValue(b []byte, v ast.Value) []byte {
	switch x := v.(type) {
	case ast.String:
		return quote(b, string(x))
	case ast.Number:
		return append(b, x...)
	case ast.Boolean:
		return strconv.AppendBool(b, bool(x))
	case *ast.Array:
		b = append(b, '[')
		for i := range x.Len() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, x.Elem(i).Value)
		}
		return append(b, ']')
	case ast.Object:
		b = append(b, '{')
		first := true
		// Sorted keys: lines are stable, and goldens of them are possible.
		for _, k := range x.Keys() {
			ks, ok := k.Value.(ast.String)
			if !ok {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = quote(b, string(ks))
			b = append(b, ':')
			b = appendValue(b, x.Get(k).Value)
		}
		return append(b, '}')
	}
	return append(b, "null"...)
}
