// Package logtest hands a component's log records to the test, each as "LEVEL msg k=v ...":
// the logs are the signal that a background attempt (a refresh, a refused handshake)
// happened.
package logtest

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Records is a slog handler sending each record to the channel; make it with room
// (make(logtest.Records, 64)). A record nobody has room for is dropped, so a test that
// stopped listening does not block the component.
type Records chan string

func (l Records) Enabled(context.Context, slog.Level) bool { return true }

func (l Records) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		return true
	})
	select {
	case l <- b.String():
	default:
	}
	return nil
}

func (l Records) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l Records) WithGroup(string) slog.Handler      { return l }

// Wait returns the first record containing want, failing after a generous bound.
func (l Records) Wait(t testing.TB, want string) string {
	t.Helper()
	guard := time.After(10 * time.Second)
	for {
		select {
		case rec := <-l:
			if strings.Contains(rec, want) {
				return rec
			}
		case <-guard:
			t.Fatalf("no log record containing %q", want)
		}
	}
}
