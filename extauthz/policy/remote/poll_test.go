package remote

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/extauthz/policy"
)

// Every delay, after a success or any number of failures, is within min_delay..max_delay,
// and failures back off towards max_delay.
func TestScheduleStaysWithinPollingBounds(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999999} {
		s := schedule{min: 10 * time.Second, max: 120 * time.Second, rand: func() float64 { return r }}
		prev := time.Duration(0)
		for failures := 0; failures < 12; failures++ {
			d := s.next(failures)
			if d < s.min || d > s.max {
				t.Errorf("rand %v, %d failures: %s, outside [%s, %s]", r, failures, d, s.min, s.max)
			}
			if failures > 1 && d < prev {
				t.Errorf("rand %v, %d failures: %s, shorter than after %d (%s)", r, failures, d, failures-1, prev)
			}
			if failures > 0 {
				prev = d
			}
		}
		if d := s.next(20); d < s.max*8/10 {
			t.Errorf("rand %v: after 20 failures %s, want near max_delay", r, d)
		}
	}
}

// signedRig serves bundles signed by a key of its own to a Source that verifies them.
func signedRig(t *testing.T, srv http.Handler, manual bool) (*rig, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	c := bundleConfig(hs.URL)
	c.Signing = signingKey(t, keyFile, "default")
	reg := prometheus.NewRegistry()
	e := policy.NewPending(policy.Options{RunTests: true, Metrics: policy.NewMetrics(reg)})
	src, err := New(t.Context(), Options{Bundle: c, Engine: e, Manual: manual})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{engine: e, src: src, reg: reg}, key
}

func tampered(t *testing.T, key *rsa.PrivateKey, rev string) []byte {
	return makeBundleThen(t, rev, policySource(rev, false), key, "default", func(b *bundle.Bundle) {
		b.Modules[0].Raw = []byte(policySource(rev+"-evil", false))
	})
}

// The rejection counter counts bundles, by ETag: one tampered bundle downloaded again at
// every retry is one rejection; the next tampered one is another.
func TestOneRejectionPerBundle(t *testing.T) {
	srv := &server{}
	r, key := signedRig(t, srv, true)
	srv.set(makeBundle(t, "g1", policySource("g1", false), key, "default"), `"g1"`)
	if err := r.src.Trigger(t.Context()); err != nil || r.revision() != "g1" {
		t.Fatalf("good bundle: %v, %q", err, r.revision())
	}
	steps := []struct {
		body         []byte
		etag         string
		wantRejected float64
	}{
		{tampered(t, key, "t1"), `"t1"`, 1},
		{nil, "", 1}, // the same bundle, downloaded again
		{nil, "", 1},
		{[]byte("not a tarball"), `"t2"`, 2},
		{nil, "", 2},
		{tampered(t, key, "t3"), `"t3"`, 3},
	}
	for i, st := range steps {
		if st.body != nil {
			srv.set(st.body, st.etag)
		}
		if err := r.src.Trigger(t.Context()); err == nil {
			t.Fatalf("step %d: a bad bundle was accepted", i)
		}
		if got := r.loads(t, "rejected"); got != st.wantRejected || r.revision() != "g1" {
			t.Fatalf("step %d: rejected %v, revision %q; want %v, g1 in force", i, got, r.revision(), st.wantRejected)
		}
	}
	// After a good bundle, the same bad one published again is a new rejection.
	srv.set(makeBundle(t, "g2", policySource("g2", false), key, "default"), `"g2"`)
	if err := r.src.Trigger(t.Context()); err != nil || r.revision() != "g2" {
		t.Fatalf("good bundle: %v, %q", err, r.revision())
	}
	srv.set(tampered(t, key, "t1"), `"t1"`)
	_ = r.src.Trigger(t.Context())
	if got := r.loads(t, "rejected"); got != 4 {
		t.Fatalf("t1 again after g2: rejected %v, want 4", got)
	}
}

// timedServer serves one tampered bundle and records when each request came.
type timedServer struct {
	*server
	mu    sync.Mutex
	times []time.Time
	third chan struct{}
}

func (s *timedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.times = append(s.times, time.Now())
	if len(s.times) == 3 {
		close(s.third)
	}
	s.mu.Unlock()
	s.server.ServeHTTP(w, r)
}

// Polling, a rejected bundle is retried no sooner than min_delay (OPA's own loop retried
// after 0, 160 and 256 ms) and counted once.
func TestRetriesStayWithinPollingBounds(t *testing.T) {
	ts := &timedServer{server: &server{}, third: make(chan struct{})}
	r, key := signedRig(t, ts, false)
	ts.set(tampered(t, key, "t1"), `"t1"`)
	r.src.Start(t.Context())
	defer r.src.Stop(context.Background())
	select {
	case <-ts.third:
	case <-time.After(30 * time.Second):
		t.Fatal("fewer than 3 downloads in 30s")
	}
	ts.mu.Lock()
	times := append([]time.Time(nil), ts.times...)
	ts.mu.Unlock()
	minDelay := bundleConfig("").MinDelay
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < minDelay {
			t.Errorf("download %d came %s after the one before, under min_delay %s", i+1, gap, minDelay)
		}
	}
	if got := r.loads(t, "rejected"); got != 1 {
		t.Errorf("rejected %v after %d downloads of one bundle, want 1", got, len(times))
	}
}
