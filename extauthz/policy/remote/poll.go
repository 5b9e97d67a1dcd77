package remote

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/plugins/rest"
)

// schedule is when to poll next: after a success, a jittered delay between min_delay and
// max_delay (OPA's own rule); after failures, an exponential backoff that also stays within
// those bounds. OPA's downloader would retry after 0, 160 ms, 256 ms, ...: a tampered bundle
// was fetched four or five times within a second of being published, far below min_delay.
type schedule struct {
	min, max time.Duration
	rand     func() float64 // [0, 1)
}

func (s schedule) next(failures int) time.Duration {
	if failures == 0 {
		return s.min + time.Duration(s.rand()*float64(s.max-s.min))
	}
	d := s.min
	for i := 1; i < failures && d < s.max; i++ {
		d *= 2
	}
	d = min(d, s.max)
	// Up to 20% earlier, so that replicas do not poll in step; never below min_delay.
	return max(s.min, d-time.Duration(s.rand()*0.2*float64(d)))
}

// poll downloads at once, then on the schedule, until ctx ends.
func (s *Source) poll(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	sched := schedule{min: s.o.Bundle.MinDelay, max: s.o.Bundle.MaxDelay, rand: rand.Float64}
	failures := 0
	for {
		err := s.dl.Trigger(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
		} else {
			failures = 0
		}
		t := time.NewTimer(sched.next(failures))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// lastResponse remembers the ETag of the last bundle response. OPA's downloader drops it
// when the bundle then fails to read or verify, and it is what tells a bundle rejected again
// (the same ETag, downloaded again at each retry) from a new bad one.
type lastResponse struct {
	mu   sync.Mutex
	etag string
}

func (l *lastResponse) set(etag string) {
	l.mu.Lock()
	l.etag = etag
	l.mu.Unlock()
}

func (l *lastResponse) get() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.etag
}

// etagPlugin wraps the credential plugin OPA's REST client would use (bearer, client TLS or
// none) to see each response's ETag and to follow redirects by our policy
// (keepCredentialsAtOrigin); requests are prepared by that plugin as before.
type etagPlugin struct {
	inner rest.HTTPAuthPlugin
	last  *lastResponse
}

// etagPluginName names etagPlugin in the REST client's config.
const etagPluginName = "scopegate-bundle-etag"

func (p *etagPlugin) NewClient(c rest.Config) (*http.Client, error) {
	hc, err := p.inner.NewClient(c)
	if err != nil {
		return nil, err
	}
	next := hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	cp := *hc
	cp.Transport = etagTransport{next: next, last: p.last}
	cp.CheckRedirect = keepCredentialsAtOrigin
	return &cp, nil
}

func (p *etagPlugin) Prepare(r *http.Request) error { return p.inner.Prepare(r) }

type etagTransport struct {
	next http.RoundTripper
	last *lastResponse
}

func (t etagTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusOK {
		t.last.set(resp.Header.Get("ETag"))
	} else {
		t.last.set("")
	}
	return resp, err
}

// withETagPlugin returns the REST client config raw with its credentials replaced by the
// etag plugin, and that plugin wrapping the credentials raw names.
func withETagPlugin(raw []byte, last *lastResponse) ([]byte, rest.AuthPluginLookupFunc, error) {
	var inner rest.Config
	if err := json.Unmarshal(raw, &inner); err != nil {
		return nil, nil, err
	}
	plugin, err := inner.AuthPlugin(nil)
	if err != nil {
		return nil, nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, nil, err
	}
	m["credentials"] = map[string]any{"plugin": etagPluginName}
	out, err := json.Marshal(m)
	if err != nil {
		return nil, nil, err
	}
	p := &etagPlugin{inner: plugin, last: last}
	return out, func(name string) rest.HTTPAuthPlugin {
		if name == etagPluginName {
			return p
		}
		return nil
	}, nil
}
