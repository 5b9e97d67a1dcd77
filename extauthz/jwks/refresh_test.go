package jwks

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/scopegate/scopegate/internal/testissuer"
)

// logRecords is a slog handler that hands each record's message and attributes to the test:
// the source's logs are the signal that a background attempt happened.
type logRecords chan string

func (l logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l logRecords) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		return true
	})
	select {
	case l <- b.String():
	default: // a test that stopped listening does not block the source
	}
	return nil
}
func (l logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logRecords) WithGroup(string) slog.Handler      { return l }

// waitLog returns the first record containing want, failing after a generous bound.
func waitLog(t *testing.T, logs logRecords, want string) string {
	t.Helper()
	guard := time.After(10 * time.Second)
	for {
		select {
		case rec := <-logs:
			if strings.Contains(rec, want) {
				return rec
			}
		case <-guard:
			t.Fatalf("no log record containing %q", want)
		}
	}
}

// A key added at the IdP is picked up by the periodic refresh alone: no token names it.
func TestPeriodicRefresh(t *testing.T) {
	k1 := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k1)
	defer is.Close()
	m := NewMetrics(prometheus.NewRegistry())
	s, err := New(Options{Name: "t", URL: is.JWKSURL(), RefreshInterval: 50 * time.Millisecond,
		UnknownKIDInterval: time.Hour, FetchTimeout: 2 * time.Second, MaxBytes: 1 << 16, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	changed := s.Changed()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx)
	<-changed
	is.SetKeys(k1, testissuer.NewKey("k2", "EdDSA"))
	guard := time.After(10 * time.Second)
	for s.Current().Get("k2") == nil {
		changed = s.Changed()
		if s.Current().Get("k2") != nil {
			break
		}
		select {
		case <-changed:
		case <-guard:
			t.Fatal("k2 never picked up by the periodic refresh")
		}
	}
	if n := counter(t, m.unknownKIDs.WithLabelValues("t")); n != 0 {
		t.Fatalf("%v unknown-kid refreshes; the key must have come from the periodic one", n)
	}
	if n := counter(t, m.refreshes.WithLabelValues("t")); n < 2 {
		t.Fatalf("%v key sets accepted, want the first and a periodic one", n)
	}
}

// Discovery refuses a document whose issuer is not the configured one (OpenID Connect
// Discovery §4.3): its jwks_uri is never fetched and the source stays without keys.
func TestDiscoveryRefusesOtherIssuer(t *testing.T) {
	is := testissuer.New(testissuer.NewKey("k1", "ES256"))
	defer is.Close()
	configured := is.Issuer
	is.Issuer = "https://impostor.example" // what the served document claims
	logs := make(logRecords, 64)
	m := NewMetrics(prometheus.NewRegistry())
	s, err := New(Options{Name: "t", Issuer: configured, Discovery: true, RefreshInterval: time.Hour,
		UnknownKIDInterval: time.Hour, FetchTimeout: 2 * time.Second, MaxBytes: 1 << 16,
		RetryMin: time.Hour, Logger: slog.New(logs), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx)
	rec := waitLog(t, logs, "jwks fetch failed")
	if !strings.Contains(rec, `issuer "https://impostor.example" is not the configured`) {
		t.Errorf("failure does not name the mismatched issuer: %s", rec)
	}
	if s.Ready() || is.Requests() != 0 {
		t.Fatalf("ready=%v after %d JWKS requests; want no keys and no fetch of the impostor's jwks_uri", s.Ready(), is.Requests())
	}
	if n := counter(t, m.failures.WithLabelValues("t")); n != 1 {
		t.Fatalf("%v failures counted, want 1", n)
	}
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
