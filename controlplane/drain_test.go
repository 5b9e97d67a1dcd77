package controlplane

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scopegate/scopegate/internal/testing/envoysim"
)

// TestDrain: when Run's context ends, /readyz says draining while ADS is still served (open
// streams stay, a new Envoy still gets its config); then every stream ends with UNAVAILABLE,
// the status Envoy reconnects on, and Run returns within the drain delay and a second.
func TestDrain(t *testing.T) {
	const delay = 1500 * time.Millisecond
	h := start(t, testConfig(cfgOpt{}), func(o *Options) { o.DrainDelay = delay })
	c := h.sotw("edge-1", "edge", envoysim.Options{})
	d := h.delta("edge-2", "edge", envoysim.Options{})
	h.waitHolds(c, "edge")
	h.waitHolds(d, "edge")
	var ready struct{ Status string }
	if code := h.getJSON("/readyz", &ready); code != 200 {
		t.Fatalf("/readyz before the drain: %d %+v", code, ready)
	}

	begin := time.Now()
	h.cancel()
	h.eventually("/readyz to say draining", func() bool { return h.getJSON("/readyz", &ready) == 503 && ready.Status == "draining" })
	late := h.sotw("edge-3", "edge", envoysim.Options{})
	h.waitHolds(late, "edge")
	for _, cl := range []*envoysim.Client{c, d} {
		select {
		case <-cl.Done():
			t.Fatalf("a stream ended during the drain: %v", cl.Err())
		default:
		}
	}
	if time.Since(begin) >= delay {
		t.Skipf("the machine is too slow to observe the drain within its %s", delay)
	}

	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(delay + 10*time.Second):
		t.Fatal("Run did not return after the drain")
	}
	h.cancel = nil // stopped
	if took := time.Since(begin); took < delay || took > delay+time.Second {
		t.Errorf("Run returned %s after its context ended; want the %s drain and at most a second more", took, delay)
	}
	for _, cl := range []*envoysim.Client{c, d, late} {
		<-cl.Done()
		if code := status.Code(cl.Err()); code != codes.Unavailable {
			t.Errorf("stream ended with %v (%v), want Unavailable", code, cl.Err())
		}
	}
}
