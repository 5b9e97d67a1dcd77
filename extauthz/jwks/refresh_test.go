package jwks

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/scopegate/scopegate/internal/testing/logtest"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

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
// Discovery §4.3): its jwks_uri is never fetched and the source stays without keys. The
// mismatch is permanent until someone fixes a config: it is said once at ERROR, then retried
// at the longest back-off and logged at DEBUG while it repeats; /readyz has it as last_error.
func TestDiscoveryRefusesOtherIssuer(t *testing.T) {
	is := testissuer.New(testissuer.NewKey("k1", "ES256"))
	defer is.Close()
	configured := is.Issuer
	is.Issuer = "https://impostor.example" // what the served document claims
	logs := make(logtest.Records, 64)
	m := NewMetrics(prometheus.NewRegistry())
	s, err := New(Options{Name: "t", Issuer: configured, Discovery: true, RefreshInterval: time.Hour,
		UnknownKIDInterval: time.Hour, FetchTimeout: 2 * time.Second, MaxBytes: 1 << 16,
		RetryMin: time.Millisecond, RetryMax: 20 * time.Millisecond, Logger: slog.New(logs), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx)
	rec := logs.Wait(t, "jwks fetch failed")
	if !strings.HasPrefix(rec, "ERROR ") || !strings.Contains(rec, `issuer "https://impostor.example" is not the configured`) || !strings.Contains(rec, "retry_in=20ms") {
		t.Errorf("first failure: want ERROR naming the mismatched issuer, retried at the longest back-off (20ms): %s", rec)
	}
	for i := 0; i < 3; i++ {
		if rec := logs.Wait(t, "jwks fetch failed"); !strings.HasPrefix(rec, "DEBUG ") {
			t.Errorf("repeat %d of the same mismatch: want DEBUG, got %s", i+1, rec)
		}
	}
	if s.Ready() || is.Requests() != 0 {
		t.Fatalf("ready=%v after %d JWKS requests; want no keys and no fetch of the impostor's jwks_uri", s.Ready(), is.Requests())
	}
	if n := counter(t, m.failures.WithLabelValues("t")); n < 4 {
		t.Fatalf("%v failures counted, want one per attempt (4 at least)", n)
	}
	if st := s.Status(); !strings.Contains(st.LastError, "impostor") || st.FetchedAt != nil || st.Source != configured+"/.well-known/openid-configuration" {
		t.Fatalf("status %+v: want the discovery URL, the mismatch as last_error and no fetched_at", st)
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

// A failed periodic refresh is retried with back-off, not a whole refresh_interval later;
// Status says which keys are in force since when, and why the latest fetch failed until one
// succeeds again.
func TestPeriodicRetryAndStatus(t *testing.T) {
	k1 := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(k1)
	defer is.Close()
	logs := make(logtest.Records, 64)
	const every = time.Second
	s, err := New(Options{Name: "t", URL: is.JWKSURL() + "?api_key=secret", RefreshInterval: every, UnknownKIDInterval: time.Hour,
		FetchTimeout: 2 * time.Second, MaxBytes: 1 << 16, RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := s.Changed()
	before := time.Now()
	s.Start(ctx)
	<-changed
	st := s.Status()
	if st.FetchedAt == nil || st.FetchedAt.Before(before.Add(-time.Millisecond)) || len(st.KIDs) != 1 || st.KIDs[0] != "k1" || st.LastError != "" {
		t.Fatalf("status after the first fetch: %+v", st)
	}
	if strings.Contains(st.Source, "secret") || !strings.HasSuffix(st.Source, "/keys?…") {
		t.Fatalf("status shows the URL's query: %q", st.Source)
	}
	first := *st.FetchedAt

	is.SetMode(testissuer.Down)
	rec := logs.Wait(t, "jwks refresh failed")
	failedAt := time.Now()
	if !strings.Contains(rec, "trigger=periodic") || strings.Contains(rec, "secret") {
		t.Errorf("refresh failure log: %s", rec)
	}
	if st := s.Status(); !strings.Contains(st.LastError, "503") || st.LastErrorAt == nil || !st.FetchedAt.Equal(first) {
		t.Fatalf("status after a failed refresh: %+v; want the failure and the set in force since %s", st, first)
	}
	k2 := testissuer.NewKey("k2", "ES256")
	is.SetKeys(k2)
	is.SetMode(testissuer.Serving)
	for s.Current().Get("k2") == nil {
		changed := s.Changed()
		if s.Current().Get("k2") != nil {
			break
		}
		select {
		case <-changed:
		case <-time.After(10 * time.Second):
			t.Fatal("k2 never fetched after the IdP came back")
		}
	}
	if took := time.Since(failedAt); took >= every {
		t.Errorf("the failed refresh was retried %s later, want sooner than refresh_interval (%s)", took, every)
	}
	if st := s.Status(); st.LastError != "" || !st.FetchedAt.After(first) || len(st.KIDs) != 1 || st.KIDs[0] != "k2" {
		t.Fatalf("status after recovery: %+v", st)
	}
}
