package oauth

import "sync"

// keyCache keeps the proof keys already parsed, by their JWK text: a client signs every
// proof with the same key, and parsing a JWK and computing its thumbprint costs more than
// everything else a proof needs besides its signature. A refused JWK is not kept.
type keyCache struct {
	mu sync.RWMutex
	m  map[string]parsedKey
}

type parsedKey struct {
	key any
	jkt string
	alg string
}

// maxCachedKeys bounds the cache; when full, a random entry makes room.
const maxCachedKeys = 4096

func (c *keyCache) get(raw []byte, alg string) (any, string, error) {
	c.mu.RLock()
	k, ok := c.m[string(raw)]
	c.mu.RUnlock()
	if ok && k.alg == alg {
		return k.key, k.jkt, nil
	}
	key, jkt, err := publicKey(raw, alg)
	if err != nil {
		return nil, "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]parsedKey)
	}
	if len(c.m) >= maxCachedKeys {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[string(raw)] = parsedKey{key: key, jkt: jkt, alg: alg}
	return key, jkt, nil
}
