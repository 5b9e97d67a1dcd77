package xdsserver

import (
	"context"
	"sync"
	"testing"
	"unsafe"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/scopegate/scopegate/internal/testing/envoysim"
)

// TestOneEncodingPerVersion: streams of both protocols receive a change; every response of
// a version is the same bytes in memory (one encoding, shared), each type is encoded and
// its resources hashed once per version however many streams there are, and the streams'
// name sets are one interned set.
func TestOneEncodingPerVersion(t *testing.T) {
	type seen struct {
		first *byte // the first shared buffer's bytes
	}
	var (
		mu     sync.Mutex
		frames []seen
	)
	frameSent = func(f *frame) {
		mu.Lock()
		defer mu.Unlock()
		frames = append(frames, seen{first: unsafe.SliceData(f.bufs[0].ReadOnlyData())})
	}
	t.Cleanup(func() { frameSent = nil })

	s, conn := serve(t, withScope("v1"))
	clients := dial(t, conn, 12)
	waitRoutes := func(v string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		for _, c := range clients {
			if err := c.Wait(ctx, func(c *envoysim.Client) bool { return c.Version(resource.RouteType) == v }); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitRoutes(s.Fleets()[0].Versions["routes"])

	encodedBefore, hashedBefore := encodings.Load(), hashed.Load()
	mu.Lock()
	frames = nil
	mu.Unlock()
	next := build(t, withScope("v2"))
	if err := s.Apply(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	waitRoutes(next["edge"].Versions[resource.RouteType])

	if got := encodings.Load() - encodedBefore; got != 1 {
		t.Errorf("the change encoded %d typeVersions, want 1 (routes, once for %d streams)", got, len(clients))
	}
	if got, want := hashed.Load()-hashedBefore, int64(len(next["edge"].Encoded[resource.RouteType])); got != want {
		t.Errorf("the change hashed %d resources, want %d (each route configuration once)", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(frames) != len(clients) {
		t.Fatalf("%d responses for the change, want one per stream (%d)", len(frames), len(clients))
	}
	distinct := map[*byte]int{}
	for _, f := range frames {
		distinct[f.first]++
	}
	// One buffer for the SotW responses (version_info, resources, type_url), one for the
	// delta ones (their head), whatever the number of streams.
	if len(distinct) != 2 {
		t.Errorf("the change's responses start from %d distinct buffers, want 2 shared by %d streams: %v", len(distinct), len(clients), distinct)
	}

	// Every SotW and delta stream asked for the same route configuration names: one set.
	s.names.mu.Lock()
	sets := len(s.names.sets)
	s.names.mu.Unlock()
	// Sets in use: endpoints and routes (SotW and delta share them).
	if sets > 2 {
		t.Errorf("%d interned name sets for %d streams asking for the same names", sets, len(clients))
	}
}

// TestNameSetsReleased: closed streams give their name sets back.
func TestNameSetsReleased(t *testing.T) {
	s, conn := serve(t, withScope("v1"))
	for _, c := range dial(t, conn, 4) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		err := c.Wait(ctx, func(c *envoysim.Client) bool { return c.Version(resource.RouteType) != "" })
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	eventually(t, "every name set released", func() bool {
		s.names.mu.Lock()
		defer s.names.mu.Unlock()
		return len(s.names.sets) == 0
	})
}
