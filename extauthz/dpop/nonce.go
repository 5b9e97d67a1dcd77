package dpop

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

var b64 = base64.RawURLEncoding

// Nonces are stateless server nonces (RFC 9449 §8): a nonce is a time step and its HMAC
// under a key every authz replica shares, so any replica accepts what another issued, and no
// replica stores anything. A nonce is good for the step it was issued in and the next.
type Nonces struct {
	key  []byte
	step time.Duration
}

// DefaultNonceStep is how long a nonce stays current.
const DefaultNonceStep = time.Minute

// NewNonces makes nonces keyed by key (at least 32 bytes); step 0 means DefaultNonceStep.
func NewNonces(key []byte, step time.Duration) *Nonces {
	if step <= 0 {
		step = DefaultNonceStep
	}
	return &Nonces{key: append([]byte(nil), key...), step: step}
}

func (n *Nonces) at(step uint64) string {
	var b [8 + 16]byte
	binary.BigEndian.PutUint64(b[:8], step)
	m := hmac.New(sha256.New, n.key)
	m.Write(b[:8])
	copy(b[8:], m.Sum(nil))
	return b64.EncodeToString(b[:])
}

func (n *Nonces) stepOf(t time.Time) uint64 { return uint64(t.UnixNano() / int64(n.step)) }

// Current is the nonce to hand out now.
func (n *Nonces) Current(now time.Time) string { return n.at(n.stepOf(now)) }

// Valid reports whether nonce was issued in this step or the one before.
func (n *Nonces) Valid(nonce string, now time.Time) bool {
	b, err := b64.DecodeString(nonce)
	if err != nil || len(b) != 24 {
		return false
	}
	step, cur := binary.BigEndian.Uint64(b[:8]), n.stepOf(now)
	if step != cur && step+1 != cur {
		return false
	}
	return hmac.Equal([]byte(n.at(step)), []byte(nonce))
}
