package jwks

import (
	"context"
	"sync"
	"time"
)

// The refresher runs every key-set fetch of a URL source after the first, one at a time: the
// periodic ones (refresh_interval) and the ones tokens naming an unknown kid ask for (at most
// one per unknown_kid_interval). jwkset's own unknown-kid refresh waits for its rate limiter
// inside the context meant for the fetch, so a refresh allowed to run was left with little or
// nothing of fetch_timeout (with an IdP taking 50 ms a new key was never learned). Here the
// limit is a start time the loop waits for on its own, and every fetch gets the whole
// fetch_timeout, detached from the Checks that wait for it.

// round is one fetch, asked for or under way; done is closed when it has ended.
type round struct {
	done chan struct{}
	// kids are the unknown kids that asked for it (at most maxRoundKIDs; overflow beyond):
	// when every one is in the key set by the time the round may start, it is not needed.
	kids     map[string]struct{}
	overflow bool
}

const maxRoundKIDs = 16

func newRound() *round { return &round{done: make(chan struct{}), kids: map[string]struct{}{}} }

func (r *round) ask(kid string) {
	if _, ok := r.kids[kid]; ok || r.overflow {
		return
	}
	if len(r.kids) == maxRoundKIDs {
		r.overflow = true
		return
	}
	r.kids[kid] = struct{}{}
}

type refresher struct {
	interval time.Duration // least time between two unknown-kid fetches
	wake     chan struct{}

	mu      sync.Mutex
	cur     *round    // the fetch under way, if any
	next    *round    // the fetch asked for by unknown kids, not started yet
	lastKID time.Time // start of the last fetch made for unknown kids
}

func newRefresher(interval time.Duration) *refresher {
	return &refresher{interval: interval, wake: make(chan struct{}, 1)}
}

// request records that kid was not in the key set and returns the round whose outcome the
// caller may wait for: the fetch under way (it may already carry the kid; a later one is
// asked for too, since this one may have left before the key was published), or one that
// starts now. While the rate limit holds and nothing is under way, it returns nil: the kid is
// refused at once, and the fetch it asked for runs when the limit allows.
func (r *refresher) request(kid string) *round {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next == nil {
		r.next = newRound()
	}
	r.next.ask(kid)
	select {
	case r.wake <- struct{}{}:
	default:
	}
	switch {
	case r.cur != nil:
		return r.cur
	case time.Since(r.lastKID) >= r.interval:
		return r.next
	}
	return nil
}

// trigger says why a fetch runs.
type trigger int

const (
	periodic trigger = iota
	unknownKID
)

// loop runs fetches until ctx ends: the periodic one every refreshInterval (after a failure
// sooner, backing off from retryMin to retryMax), and the unknown-kid one as soon as the rate
// limit allows. fetch makes one fetch, with its own timeout, and returns its error; known
// tells whether a kid is in the key set now.
func (r *refresher) loop(ctx context.Context, refreshInterval, retryMin, retryMax time.Duration, fetch func(trigger) error, known func(kid string) bool) {
	every := refreshInterval
	if every <= 0 {
		every = 24 * time.Hour * 365 // no periodic refresh (tests)
	}
	periodicT := time.NewTimer(every)
	defer periodicT.Stop()
	kidT := time.NewTimer(time.Hour)
	kidT.Stop()
	defer kidT.Stop()
	retry := retryMin
	defer r.abandon()
	for {
		r.mu.Lock()
		var due <-chan time.Time
		if r.next != nil {
			kidT.Reset(max(0, time.Until(r.lastKID.Add(r.interval))))
			due = kidT.C
		} else {
			kidT.Stop()
		}
		r.mu.Unlock()

		var why trigger
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
			continue
		case <-due:
			why = unknownKID
		case <-periodicT.C:
			why = periodic
		}

		r.mu.Lock()
		rd := r.next // a periodic fetch serves the kids waiting for one too
		r.next = nil
		if rd == nil {
			rd = newRound()
		}
		if why == unknownKID {
			if !rd.overflow && allKnown(rd.kids, known) {
				// The kids that asked arrived meanwhile (by the fetch under way when they
				// asked, or a periodic one): nothing left to learn.
				r.mu.Unlock()
				close(rd.done)
				continue
			}
			r.lastKID = time.Now()
		}
		r.cur = rd
		r.mu.Unlock()

		err := fetch(why)

		r.mu.Lock()
		r.cur = nil
		r.mu.Unlock()
		close(rd.done)

		if why == periodic {
			if err != nil {
				// Try again sooner than a whole refresh_interval, backing off.
				periodicT.Reset(min(retry, every))
				retry = min(2*retry, retryMax)
			} else {
				periodicT.Reset(every)
				retry = retryMin
			}
		}
	}
}

// abandon releases whoever waits on a round that will never run (the source is stopping).
func (r *refresher) abandon() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next != nil {
		close(r.next.done)
		r.next = nil
	}
}

func allKnown(kids map[string]struct{}, known func(string) bool) bool {
	for kid := range kids {
		if !known(kid) {
			return false
		}
	}
	return true
}
