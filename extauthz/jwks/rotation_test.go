package jwks

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// slowIdP serves the test issuer's endpoints after a random 50–300 ms, like an IdP under load
// or far away, and counts the key-set requests.
type slowIdP struct {
	*testissuer.Issuer
	srv    *httptest.Server
	keys   atomic.Int64  // key-set requests arrived
	served chan struct{} // a value after each key-set response
}

const slowMin, slowMax = 50 * time.Millisecond, 300 * time.Millisecond

func newSlowIdP(t *testing.T, keys ...*testissuer.Key) *slowIdP {
	t.Helper()
	is := testissuer.New(keys...)
	t.Cleanup(is.Close)
	s := &slowIdP{Issuer: is, served: make(chan struct{}, 1024)}
	rnd := rand.New(rand.NewPCG(1, 2))
	var mu sync.Mutex
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/keys" {
			s.keys.Add(1)
		}
		mu.Lock()
		d := slowMin + time.Duration(rnd.Int64N(int64(slowMax-slowMin)))
		mu.Unlock()
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		is.Server.Config.Handler.ServeHTTP(w, r)
		if r.URL.Path == "/keys" {
			select {
			case s.served <- struct{}{}:
			default:
			}
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *slowIdP) url() string { return s.srv.URL + "/keys" }

// checkCtx is what a Check gets from Envoy: our control plane's 250 ms ext_authz timeout.
func checkCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 250*time.Millisecond)
}

// noise looks up a new made-up kid every period until stop is closed, each in its own
// Check-sized context, and records how each was answered and how long it took.
type noise struct {
	mu        sync.Mutex
	latencies []time.Duration
	unknown   int // ErrUnknownKID: the 401 README promises
	pending   int // ErrRefreshPending: 503
	other     []error
	wg        sync.WaitGroup
}

func startNoise(s *Source, period time.Duration, stop <-chan struct{}) *noise {
	n := &noise{}
	n.wg.Go(func() {
		tick := time.NewTicker(period)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			n.wg.Go(func() {
				ctx, cancel := checkCtx()
				defer cancel()
				start := time.Now()
				_, err := s.Lookup(ctx, fmt.Sprintf("bogus-%d", i), "ES256")
				took := time.Since(start)
				n.mu.Lock()
				defer n.mu.Unlock()
				n.latencies = append(n.latencies, took)
				switch {
				case errors.Is(err, ErrUnknownKID):
					n.unknown++
				case errors.Is(err, ErrRefreshPending):
					n.pending++
				default:
					n.other = append(n.other, err)
				}
			})
		}
	})
	return n
}

// TestRotationWithSlowIdPAndNoise: with refresh_interval far away, an IdP answering in
// 50–300 ms and a steady stream of tokens naming made-up kids, a key published at the IdP
// verifies within one unknown_kid_interval plus one fetch (plus one Check's deadline for the
// probe that sees it), a key removed there stops verifying at the next refresh, made-up kids
// are mostly refused at once, and the refresh counter counts the IdP's key-set requests.
func TestRotationWithSlowIdPAndNoise(t *testing.T) {
	t.Run("noise", func(t *testing.T) { testRotationWithSlowIdP(t, true, false) })
	// The worst moment: just after a refresh the noise caused, so the interval holds the
	// next one back for nearly all of it.
	t.Run("noise, published just after a refresh", func(t *testing.T) { testRotationWithSlowIdP(t, true, true) })
	// Without made-up kids the valid tokens naming the new key are the only trigger.
	t.Run("quiet", func(t *testing.T) { testRotationWithSlowIdP(t, false, false) })
}

func testRotationWithSlowIdP(t *testing.T, withNoise, afterRefresh bool) {
	const interval = time.Second
	k1, k2 := testissuer.NewKey("k1", "ES256"), testissuer.NewKey("k2", "ES256")
	idp := newSlowIdP(t, k1)
	m := NewMetrics(prometheus.NewRegistry())
	s, _ := startSource(t, Options{Name: "t", URL: idp.url(), RefreshInterval: 15 * time.Minute,
		UnknownKIDInterval: interval, FetchTimeout: 600 * time.Millisecond, MaxBytes: 1 << 16, Metrics: m})

	stop := make(chan struct{})
	n := &noise{}
	if withNoise {
		n = startNoise(s, 50*time.Millisecond, stop) // 20 made-up kids a second
		// Let the noise reach its steady state: every refresh it may cause is being made.
		time.Sleep(3 * interval)
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		n.wg.Wait()
	}()

	if afterRefresh {
		for len(idp.served) > 0 { // forget the responses so far
			<-idp.served
		}
		select {
		case <-idp.served:
		case <-time.After(10 * time.Second):
			t.Fatal("the noise caused no refresh")
		}
	}
	// Publish k2, then ask for it as clients would, a Check every 25 ms.
	idp.SetKeys(k1, k2)
	published := time.Now()
	bound := interval + slowMax + 250*time.Millisecond /* the probe's own Check */ + 250*time.Millisecond /* scheduling */
	var accepted time.Duration
	for accepted == 0 {
		cctx, ccancel := checkCtx()
		_, err := s.Lookup(cctx, "k2", "ES256")
		ccancel()
		switch {
		case err == nil:
			accepted = time.Since(published)
		case time.Since(published) > 10*time.Second:
			t.Fatalf("k2 still refused 10s after it was published (last: %v); bound is %s", err, bound)
		default:
			time.Sleep(25 * time.Millisecond)
		}
	}
	t.Logf("k2 accepted %s after it was published (bound %s)", accepted.Round(time.Millisecond), bound)
	if accepted > bound {
		t.Errorf("k2 accepted after %s, want within %s (unknown_kid_interval + one fetch)", accepted, bound)
	}

	// Remove k1 at the IdP: the next refresh (the noise causes one per interval; without it,
	// one made-up kid) drops it.
	idp.SetKeys(k2)
	removed := time.Now()
	if !withNoise {
		cctx, ccancel := checkCtx()
		_, _ = s.Lookup(cctx, "made-up", "ES256")
		ccancel()
	}
	for s.Current().Get("k1") != nil {
		changed := s.Changed()
		if s.Current().Get("k1") == nil {
			break
		}
		select {
		case <-changed:
		case <-time.After(10 * time.Second):
			t.Fatal("k1 still in force 10s after it was removed: no refresh succeeded")
		}
	}
	if took := time.Since(removed); took > bound {
		t.Errorf("k1 dropped %s after its removal, want within %s", took, bound)
	}
	cctx, ccancel := checkCtx()
	_, err := s.Lookup(cctx, "k1", "ES256")
	ccancel()
	if err == nil {
		t.Fatal("the removed key k1 still verifies after the refresh")
	}

	close(stop)
	n.wg.Wait()
	// The refresh counter counts key-set requests made for unknown kids: all of them here but
	// the first fetch. (A refresh may still be on its way to the IdP: allow it to arrive.)
	for guard := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got, want := counter(t, m.unknownKIDs.WithLabelValues("t")), float64(idp.keys.Load()-1)
		if got == want {
			break
		}
		if time.Now().After(guard) {
			t.Errorf("scopegate_jwks_unknown_kid_refreshes_total = %v, IdP saw %v unknown-kid key-set requests", got, want)
			break
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !withNoise {
		return
	}
	if len(n.other) > 0 {
		t.Fatalf("made-up kids answered with unexpected errors: %v", n.other)
	}
	lat := append([]time.Duration(nil), n.latencies...)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	median := lat[len(lat)/2]
	t.Logf("made-up kids: %d answered unknown (401), %d pending (503); median %s", n.unknown, n.pending, median)
	if median > 50*time.Millisecond {
		t.Errorf("made-up kids held %s (median) before their answer, want a prompt 401", median)
	}
	if got := counter(t, m.kidMisses.WithLabelValues("t")); got < float64(n.unknown+n.pending) {
		t.Errorf("scopegate_jwks_unknown_kid_lookups_total = %v, want every made-up kid (%d) counted", got, n.unknown+n.pending)
	}
	if n.unknown < 2*n.pending {
		t.Errorf("made-up kids: %d refused as unknown, %d held to their deadline; want mostly prompt 401s", n.unknown, n.pending)
	}
}
