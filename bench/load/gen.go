package load

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// clients holds several gRPC connections (each its own HTTP/2 connection), as Envoy spreads
// ext_authz calls over several.
type clients struct {
	conns []*grpc.ClientConn
	c     []authv3.AuthorizationClient
}

func dial(addr string, n int) (*clients, error) {
	cl := &clients{}
	for range n {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			cl.close()
			return nil, err
		}
		cl.conns = append(cl.conns, conn)
		cl.c = append(cl.c, authv3.NewAuthorizationClient(conn))
	}
	return cl, nil
}

func (cl *clients) close() {
	for _, c := range cl.conns {
		c.Close()
	}
}

// tally is one run's outcome.
type tally struct {
	Requests, OK, Denied, Errors int64
	Elapsed                      time.Duration
	Hist                         Hist
	// Late is how late the open-loop dispatcher handed each request to a worker.
	Late Hist
}

func (t *tally) add(o *tally) {
	t.Requests += o.Requests
	t.OK += o.OK
	t.Denied += o.Denied
	t.Errors += o.Errors
	t.Hist.Merge(&o.Hist)
}

func (t *tally) record(resp *authv3.CheckResponse, err error, lat time.Duration) {
	t.Requests++
	t.Hist.Record(lat)
	switch {
	case err != nil:
		t.Errors++
	case codes.Code(resp.GetStatus().GetCode()) == codes.OK:
		t.OK++
	default:
		t.Denied++
	}
}

// closedLoop runs workers that each send a request and wait for the answer before the next,
// for dur or until limit requests were started (limit 0: reqs is cycled; otherwise each
// request of reqs[:limit] is sent once). Workers are spread over the connections.
func closedLoop(ctx context.Context, cl *clients, workers int, reqs []*authv3.CheckRequest, limit int, dur time.Duration) *tally {
	var (
		next atomic.Int64
		stop atomic.Bool
		mu   sync.Mutex
		all  tally
		wg   sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(ctx, dur+30*time.Second) // a hung server can't hang the run
	defer cancel()
	timer := time.AfterFunc(dur, func() { stop.Store(true) })
	defer timer.Stop()
	start := time.Now()
	for w := range workers {
		client := cl.c[w%len(cl.c)]
		wg.Go(func() {
			t := &tally{}
			for !stop.Load() && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if limit > 0 && i >= limit {
					break
				}
				req := reqs[i%len(reqs)]
				t0 := time.Now()
				resp, err := client.Check(ctx, req)
				t.record(resp, err, time.Since(t0))
			}
			mu.Lock()
			all.add(t)
			mu.Unlock()
		})
	}
	wg.Wait()
	all.Elapsed = time.Since(start)
	return &all
}

// openLoop sends requests at a fixed mean rate with Poisson arrivals for dur, whatever the
// server's answers do, and measures each latency from the request's intended send time, so
// a stall is charged to every request that should have been sent during it (no coordinated
// omission). workers bounds the requests in flight; a request waiting for a worker is late,
// and its wait counts.
func openLoop(ctx context.Context, cl *clients, workers int, reqs []*authv3.CheckRequest, rate float64, dur time.Duration) *tally {
	n := int(rate * dur.Seconds())
	if n < 1 {
		n = 1
	}
	// The schedule is fixed before the first send: offsets from start.
	rng := rand.New(rand.NewPCG(1, 2))
	offs := make([]time.Duration, n)
	var at float64
	for i := range offs {
		offs[i] = time.Duration(at * float64(time.Second))
		at += rng.ExpFloat64() / rate
	}
	ctx, cancel := context.WithTimeout(ctx, dur+30*time.Second)
	defer cancel()
	due := make(chan int, n)
	var (
		mu  sync.Mutex
		all tally
		wg  sync.WaitGroup
	)
	start := time.Now()
	for w := range workers {
		client := cl.c[w%len(cl.c)]
		wg.Go(func() {
			t := &tally{}
			for i := range due {
				if ctx.Err() != nil {
					continue // drain
				}
				resp, err := client.Check(ctx, reqs[i%len(reqs)])
				t.record(resp, err, time.Since(start.Add(offs[i])))
			}
			mu.Lock()
			all.add(t)
			mu.Unlock()
		})
	}
	// Pacing: wait for each request's send time (a clock, not synchronisation); a late
	// dispatcher sends the overdue requests at once, and their lateness is measured, in the
	// requests' latency and on its own (Late), so the generator's precision is on record.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p := newPacer()
	for i := range n {
		at := start.Add(offs[i])
		p.sleepUntil(at)
		if ctx.Err() != nil {
			break
		}
		all.Late.Record(time.Since(at))
		due <- i
	}
	close(due)
	wg.Wait()
	all.Elapsed = time.Since(start)
	return &all
}
