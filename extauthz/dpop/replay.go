package dpop

import (
	"crypto/sha256"
	"sync"
	"time"
)

// replayCache remembers the proofs (key thumbprint and jti) seen recently. A proof is
// accepted only within the iat window, so a jti needs remembering only for about twice that:
// entries live in two generations that rotate every span (2 × window), so each is kept
// between one and two spans, and an expired entry costs nothing to drop.
//
// Each generation holds at most max entries. When the current one is full of live entries,
// a new proof is refused (503, "try again later") rather than an old one forgotten: forgetting
// would let that proof be replayed.
type replayCache struct {
	mu        sync.Mutex
	max       int
	span      time.Duration
	rotatedAt time.Time
	cur, prev map[[16]byte]struct{}
}

type replayResult int

const (
	replayNew replayResult = iota
	replaySeen
	replayFull
)

func newReplayCache(max int, span time.Duration) *replayCache {
	return &replayCache{max: max, span: span, cur: map[[16]byte]struct{}{}, prev: map[[16]byte]struct{}{}}
}

// add records (jkt, jti) and says whether it was seen before. Keys are 16 bytes of a SHA-256
// of both, so an entry's size does not depend on what the client sent.
func (c *replayCache) add(jkt, jti string, now time.Time) replayResult {
	h := sha256.New()
	h.Write([]byte(jkt))
	h.Write([]byte{0})
	h.Write([]byte(jti))
	var sum [32]byte
	var k [16]byte
	copy(k[:], h.Sum(sum[:0]))

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rotatedAt.IsZero() {
		c.rotatedAt = now
	}
	if now.Sub(c.rotatedAt) >= c.span {
		c.prev, c.cur = c.cur, make(map[[16]byte]struct{}, len(c.cur))
		if now.Sub(c.rotatedAt) >= 2*c.span {
			clear(c.prev) // idle for two spans: nothing in either is live
		}
		c.rotatedAt = now
	}
	if _, ok := c.cur[k]; ok {
		return replaySeen
	}
	if _, ok := c.prev[k]; ok {
		return replaySeen
	}
	if len(c.cur) >= c.max {
		return replayFull
	}
	c.cur[k] = struct{}{}
	return replayNew
}
