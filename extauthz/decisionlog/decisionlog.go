// Package decisionlog writes one JSON line per authorization decision: what was asked, who
// asked, what was decided and why. It never carries the token, the Authorization header or
// cookies: a Record has no field that could hold them.
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
	b = field(b, "policy_revision", r.Revision)
	b = append(b, `,"duration_us":`...)
	b = strconv.AppendInt(b, r.Duration.Microseconds(), 10)
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
