package sharedstate

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/valkey-io/valkey-go"
)

// FirstUse records a DPoP proof, named by its key's thumbprint (jkt) and its jti, and reports
// whether this is its first use on any replica. left is how much longer this replica would
// accept the proof; the entry lives that long plus ClockSkew, so no replica can accept it
// again once it is gone. One atomic SET NX PX: two replicas racing with one proof cannot
// both see a first use.
//
// The key is prefix + "dpop:{jkt}:" + a hash of the jti: the hash tag keeps one key's proofs
// on one shard of a Redis Cluster, and a client's jtis can only ever collide with its own.
func (s *Store) FirstUse(ctx context.Context, jkt, jti string, left time.Duration) (bool, error) {
	if !thumbprint(jkt) {
		// dpop always passes the RFC 7638 thumbprint it computed; anything else is a bug.
		return false, fmt.Errorf("%w: the proof key thumbprint is not base64url SHA-256", ErrUnavailable)
	}
	c, ctx, cancel, err := s.begin(ctx)
	if err != nil {
		s.replayFallback()
		return false, err
	}
	defer cancel()
	ttl := left + s.o.ClockSkew
	if ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	start := time.Now()
	err = c.Do(ctx, c.B().Set().Key(s.replayKey(jkt, jti)).Value("1").Nx().Px(ttl).Build()).Error()
	nilReply := valkey.IsValkeyNil(err)
	if nilReply {
		err = nil
	}
	s.m.observe(opReplay, time.Since(start), err)
	if err != nil {
		s.failed(err)
		s.replayFallback()
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	s.fails.Store(0)
	if nilReply { // NX refused: the key exists, the proof was used
		s.m.replayed.Inc()
		return false, nil
	}
	s.m.first.Inc()
	return true, nil
}

func (s *Store) replayFallback() {
	if s.o.LocalFallback {
		s.m.fallbackReplay.Inc()
	}
}

// replayKey is prefix + "dpop:{" + jkt + "}:" + base64url(SHA-256(jti))[:16 bytes].
func (s *Store) replayKey(jkt, jti string) string {
	sum := sha256.Sum256([]byte(jti))
	var h [22]byte
	base64.RawURLEncoding.Encode(h[:], sum[:16])
	return s.key("dpop:{", jkt, "}:", string(h[:]))
}

// thumbprint reports whether jkt looks like an RFC 7638 SHA-256 thumbprint: 43 base64url
// characters (so it can't break out of the hash tag).
func thumbprint(jkt string) bool {
	if len(jkt) != 43 {
		return false
	}
	for i := 0; i < len(jkt); i++ {
		c := jkt[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
