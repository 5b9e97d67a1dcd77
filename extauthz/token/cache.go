package token

import (
	"sync"
	"sync/atomic"
)

// cacheShards spreads the lock: a Check on every request must not serialise on one mutex.
const cacheShards = 64

// Cache holds verified identities keyed by the SHA-256 of the token, so the token itself is
// never kept. It is bounded: a full shard drops an expired entry if it finds one within a few
// probes, an arbitrary one otherwise.
type Cache struct {
	shards   [cacheShards]cacheShard
	perShard int
	size     atomic.Int64
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[[32]byte]*entry
}

// entry pins what a hit must re-check: expiry, and that the verifying key is still published.
// An introspected entry (is set) has no key; it is fresh until expiry and may still stand in
// for a failed introspection call until stale; a negative one holds the refusal (err).
type entry struct {
	id     *Identity
	expiry int64 // unix nanoseconds; the entry is dead (introspected: no longer fresh) from this instant
	kid    string
	fp     [32]byte

	is    *issuer // the introspecting issuer; nil for a verified JWS
	err   *Error  // a cached refusal of an opaque token
	stale int64   // introspected positive: the token's exp, until which it backs up a failing IdP
}

// deadAt is when the entry can serve nothing any more.
func (e *entry) deadAt() int64 { return max(e.expiry, e.stale) }

// NewCache returns a cache of at most maxEntries (rounded up to a multiple of the shard count),
// or nil (no caching) when maxEntries is 0.
func NewCache(maxEntries int) *Cache {
	if maxEntries <= 0 {
		return nil
	}
	c := &Cache{perShard: (maxEntries + cacheShards - 1) / cacheShards}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]*entry)
	}
	return c
}

func (c *Cache) shard(k *[32]byte) *cacheShard { return &c.shards[k[0]%cacheShards] }

func (c *Cache) get(k *[32]byte) *entry {
	s := c.shard(k)
	s.mu.RLock()
	e := s.m[*k]
	s.mu.RUnlock()
	return e
}

func (c *Cache) put(k *[32]byte, e *entry, now int64) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[*k]; !ok && len(s.m) >= c.perShard {
		c.evictLocked(s, now)
	}
	if _, ok := s.m[*k]; !ok {
		c.size.Add(1)
	}
	s.m[*k] = e
}

func (c *Cache) evictLocked(s *cacheShard, now int64) {
	probes := 0
	var victim [32]byte
	found := false
	for k, e := range s.m { // map order is randomised: this samples
		if !found {
			victim, found = k, true
		}
		if e.deadAt() <= now {
			victim = k
			break
		}
		if probes++; probes >= 8 {
			break
		}
	}
	if found {
		delete(s.m, victim)
		c.size.Add(-1)
	}
}

func (c *Cache) drop(k *[32]byte, e *entry) {
	s := c.shard(k)
	s.mu.Lock()
	if s.m[*k] == e {
		delete(s.m, *k)
		c.size.Add(-1)
	}
	s.mu.Unlock()
}

// Len is the number of entries.
func (c *Cache) Len() int {
	if c == nil {
		return 0
	}
	return int(c.size.Load())
}

// sweep removes expired entries; run periodically so dead entries don't sit until eviction.
func (c *Cache) sweep(now int64) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if e.deadAt() <= now {
				delete(s.m, k)
				c.size.Add(-1)
			}
		}
		s.mu.Unlock()
	}
}
