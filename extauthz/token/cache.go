package token

import (
	"sync"
	"sync/atomic"

	"github.com/scopegate/scopegate/extauthz/denial"
)

// cacheShards spreads the lock: a Check on every request must not serialise on one mutex.
const cacheShards = 64

// DefaultNegativeEntries bounds the refusals kept (token_cache.max_negative_entries).
const DefaultNegativeEntries = 10_000

// Cache holds verified identities keyed by the SHA-256 of the token, so the token itself is
// never kept. Refusals (an introspecting issuer's inactive or refused answers) live in a store
// of their own, bounded on its own: anyone can mint junk tokens, and junk must never evict a
// valid answer. Each store is bounded: a full shard drops an expired entry if it finds one
// within a few probes, an arbitrary one of the same store otherwise.
type Cache struct {
	pos, neg store
}

type store struct {
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

	is    *issuer        // the introspecting issuer; nil for a verified JWS
	err   *denial.Denial // a cached refusal of an opaque token
	stale int64          // introspected positive: the token's exp, until which it backs up a failing IdP
}

// deadAt is when the entry can serve nothing any more.
func (e *entry) deadAt() int64 { return max(e.expiry, e.stale) }

// NewCache returns a cache of at most maxEntries verified tokens (rounded up to a multiple of
// the shard count) and DefaultNegativeEntries refusals, or nil (no caching) when maxEntries
// is 0.
func NewCache(maxEntries int) *Cache { return NewCacheSized(maxEntries, DefaultNegativeEntries) }

// NewCacheSized is NewCache with the bound of the refusals' store (0: refusals are not cached).
func NewCacheSized(maxEntries, maxNegative int) *Cache {
	if maxEntries <= 0 {
		return nil
	}
	c := &Cache{}
	c.pos.init(maxEntries)
	c.neg.init(maxNegative)
	return c
}

func (s *store) init(max int) {
	if max <= 0 {
		return // perShard 0: put keeps nothing
	}
	s.perShard = (max + cacheShards - 1) / cacheShards
	for i := range s.shards {
		s.shards[i].m = make(map[[32]byte]*entry)
	}
}

func (s *store) shard(k *[32]byte) *cacheShard { return &s.shards[k[0]%cacheShards] }

func (c *Cache) get(k *[32]byte) *entry {
	if e := c.pos.get(k); e != nil {
		return e
	}
	return c.neg.get(k)
}

func (s *store) get(k *[32]byte) *entry {
	if s.perShard == 0 {
		return nil
	}
	sh := s.shard(k)
	sh.mu.RLock()
	e := sh.m[*k]
	sh.mu.RUnlock()
	return e
}

// put stores e: a refusal in the refusals' store, anything else with the verified tokens.
// A key lives in one store at a time.
func (c *Cache) put(k *[32]byte, e *entry, now int64) {
	into, other := &c.pos, &c.neg
	if e.err != nil {
		into, other = &c.neg, &c.pos
	}
	other.remove(k)
	into.put(k, e, now)
}

func (s *store) put(k *[32]byte, e *entry, now int64) {
	if s.perShard == 0 {
		return
	}
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[*k]; !ok && len(sh.m) >= s.perShard {
		s.evictLocked(sh, now)
	}
	if _, ok := sh.m[*k]; !ok {
		s.size.Add(1)
	}
	sh.m[*k] = e
}

func (s *store) evictLocked(sh *cacheShard, now int64) {
	probes := 0
	var victim [32]byte
	found := false
	for k, e := range sh.m { // map order is randomised: this samples
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
		delete(sh.m, victim)
		s.size.Add(-1)
	}
}

// remove deletes whatever k holds in the store.
func (s *store) remove(k *[32]byte) {
	if s.perShard == 0 {
		return
	}
	sh := s.shard(k)
	sh.mu.Lock()
	if _, ok := sh.m[*k]; ok {
		delete(sh.m, *k)
		s.size.Add(-1)
	}
	sh.mu.Unlock()
}

// drop deletes e, if k still holds it.
func (c *Cache) drop(k *[32]byte, e *entry) {
	s := &c.pos
	if e.err != nil {
		s = &c.neg
	}
	if s.perShard == 0 {
		return
	}
	sh := s.shard(k)
	sh.mu.Lock()
	if sh.m[*k] == e {
		delete(sh.m, *k)
		s.size.Add(-1)
	}
	sh.mu.Unlock()
}

// Len is the number of verified tokens (and positive introspection answers) held.
func (c *Cache) Len() int {
	if c == nil {
		return 0
	}
	return int(c.pos.size.Load())
}

// NegativeLen is the number of refusals held.
func (c *Cache) NegativeLen() int {
	if c == nil {
		return 0
	}
	return int(c.neg.size.Load())
}

// sweep removes expired entries; run periodically so dead entries don't sit until eviction.
func (c *Cache) sweep(now int64) {
	c.pos.sweep(now)
	c.neg.sweep(now)
}

func (s *store) sweep(now int64) {
	if s.perShard == 0 {
		return
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.deadAt() <= now {
				delete(sh.m, k)
				s.size.Add(-1)
			}
		}
		sh.mu.Unlock()
	}
}
