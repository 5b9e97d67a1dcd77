package oauth

import (
	"crypto/sha256"
	"errors"
	"sync"
	"time"
)

// Refusals of a ReplayCache; their text is a description fit for a client.
var (
	// ErrProofReplayed: the proof (key and jti) was seen before.
	ErrProofReplayed = errors.New("the DPoP proof was already used")
	// ErrProofKeyQuota: this proof key used up its share of the cache until the next span.
	ErrProofKeyQuota = errors.New("this DPoP key has made too many proofs; try again later")
	// ErrReplayCacheFull: the cache is full of live proofs (our side's fault).
	ErrReplayCacheFull = errors.New("try again later")
)

// ReplayCache remembers the proofs (key thumbprint and jti) seen recently. A proof is
// accepted only within the iat window, so a jti needs remembering only for about twice that:
// entries live in two generations that rotate every span (a little over 2 × window), so each
// is kept for more than one span after it was added, longer than its proof can be accepted,
// and an expired entry costs nothing to drop.
//
// Each generation holds at most max entries, and at most perKey of one proof key (jkt): the
// holder of one bound token can fill its own quota, never the cache, so it can neither
// refuse nor evict another key's proofs. When a key's quota is used up, that key's new proofs
// are refused (429); when the whole generation is full of live entries, every new proof is
// (503). An old proof is never forgotten to make room: forgetting would let it be replayed.
type ReplayCache struct {
	mu        sync.Mutex
	max       int
	perKey    int
	span      time.Duration
	rotatedAt time.Time
	cur, prev generation
}

// generation is one span's proofs, and how many of them each key made.
type generation struct {
	seen  map[[16]byte]struct{}
	byKey map[[8]byte]int32
}

func newGeneration(sizeHint int) generation {
	return generation{seen: make(map[[16]byte]struct{}, sizeHint), byKey: map[[8]byte]int32{}}
}

// NewReplayCache keeps at most entries proofs a generation (0: DefaultReplayEntries), at
// most perKey of one key (0: DefaultReplayEntriesPerKey; never more than entries), each
// generation lasting span (ReplaySpan of the iat window).
func NewReplayCache(entries, perKey int, span time.Duration) *ReplayCache {
	if entries <= 0 {
		entries = DefaultReplayEntries
	}
	if perKey <= 0 {
		perKey = DefaultReplayEntriesPerKey(entries)
	}
	return newReplayCache(entries, min(perKey, entries), span)
}

func newReplayCache(max, perKey int, span time.Duration) *ReplayCache {
	return &ReplayCache{max: max, perKey: perKey, span: span, cur: newGeneration(0), prev: newGeneration(0)}
}

// Span is how long a generation lasts: a key over its quota may try again after it.
func (c *ReplayCache) Span() time.Duration { return c.span }

// Add records (jkt, jti): nil the first time, ErrProofReplayed after, ErrProofKeyQuota or
// ErrReplayCacheFull when there is no room for it. Keys are 16 bytes of a SHA-256
// of both, so an entry's size does not depend on what the client sent; a key's quota is
// counted under 8 bytes of the SHA-256 of its thumbprint.
func (c *ReplayCache) Add(jkt, jti string, now time.Time) error {
	kh := sha256.Sum256([]byte(jkt))
	var owner [8]byte
	copy(owner[:], kh[:])
	h := sha256.New()
	h.Write(kh[:])
	h.Write([]byte(jti))
	var sum [32]byte
	var k [16]byte
	copy(k[:], h.Sum(sum[:0]))

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rotatedAt.IsZero() {
		c.rotatedAt = now
	}
	if idle := now.Sub(c.rotatedAt); idle >= c.span {
		c.prev, c.cur = c.cur, newGeneration(len(c.cur.seen))
		if idle >= 2*c.span {
			c.prev = newGeneration(0) // idle for two spans: nothing in either is live
		}
		c.rotatedAt = now
	}
	if _, ok := c.cur.seen[k]; ok {
		return ErrProofReplayed
	}
	if _, ok := c.prev.seen[k]; ok {
		return ErrProofReplayed
	}
	if int(c.cur.byKey[owner]) >= c.perKey {
		return ErrProofKeyQuota
	}
	if len(c.cur.seen) >= c.max {
		return ErrReplayCacheFull
	}
	c.cur.seen[k] = struct{}{}
	c.cur.byKey[owner]++
	return nil
}
