package sharedstate

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"
	"time"
	"unsafe"

	"github.com/valkey-io/valkey-go"
)

// MinAnswerKeyBytes is the least size of the key answers are keyed and sealed with.
const MinAnswerKeyBytes = 32

// Answers shares introspection answers between replicas. An answer is stored under a keyed
// hash (HMAC-SHA-256) of the issuer and token, so the store never holds a token, and one who
// can write to the store cannot compute where an answer for a token of their own making would
// be read. The answer itself is sealed (AES-256-GCM, the store key as associated data): the
// store holds neither its claims nor anything that could be changed or moved to another key
// without the replicas noticing (an entry that does not open is a miss).
type Answers struct {
	s    *Store
	macs sync.Pool // HMAC-SHA-256 keyed for answer keys: keying one costs as much as using it
	aead cipher.AEAD
}

func newAnswers(s *Store, key []byte) (*Answers, error) {
	if len(key) < MinAnswerKeyBytes {
		return nil, fmt.Errorf("shared state: the answer key holds %d bytes: at least %d are required", len(key), MinAnswerKeyBytes)
	}
	derive := func(label string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte("scopegate shared_state " + label))
		return h.Sum(nil)
	}
	block, err := aes.NewCipher(derive("answer sealing v1"))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	a := &Answers{s: s, aead: aead}
	mac := derive("answer keys v1")
	a.macs.New = func() any { return hmac.New(sha256.New, mac) }
	return a, nil
}

// Answer returns what the IdP answered for (issuer, token) to some replica: the body (the
// JSON object, or the signed JWT when jwt), and when it was received. ok is false when
// there is none (or one that does not open with this key).
func (a *Answers) Answer(ctx context.Context, issuer, token string) (body []byte, jwt bool, at time.Time, ok bool, err error) {
	s := a.s
	c, ctx, cancel, err := s.begin(ctx)
	if err != nil {
		s.m.fallbackIntrospection.Inc()
		return nil, false, time.Time{}, false, err
	}
	defer cancel()
	key := a.key(issuer, token, ":a")
	start := time.Now()
	raw, err := c.Do(ctx, c.B().Get().Key(key).Build()).AsBytes()
	miss := valkey.IsValkeyNil(err)
	if miss {
		err = nil
	}
	s.m.observe(opAnswerGet, time.Since(start), err)
	if err != nil {
		s.failed(err)
		s.m.fallbackIntrospection.Inc()
		return nil, false, time.Time{}, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	s.fails.Store(0)
	if !miss {
		if body, jwt, at, err = a.open(key, raw); err == nil {
			s.m.hit.Inc()
			return body, jwt, at, true, nil
		}
		s.o.Logger.Debug("shared introspection answer does not open with this replica's key: ignored", "error", err)
	}
	s.m.miss.Inc()
	return nil, false, time.Time{}, false, nil
}

// Claim asks for the right to call the IdP about (issuer, token) for up to ttl. false: another
// replica is calling already; its answer will appear in Answer.
func (a *Answers) Claim(ctx context.Context, issuer, token string, ttl time.Duration) (bool, error) {
	s := a.s
	c, ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return false, err
	}
	defer cancel()
	start := time.Now()
	err = c.Do(ctx, c.B().Set().Key(a.key(issuer, token, ":c")).Value("1").Nx().Px(max(ttl, time.Millisecond)).Build()).Error()
	taken := valkey.IsValkeyNil(err)
	if taken {
		err = nil
	}
	s.m.observe(opClaim, time.Since(start), err)
	if err != nil {
		s.failed(err)
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	s.fails.Store(0)
	return !taken, nil
}

// Share stores an answer for ttl and drops the claim, in one pipelined round trip (both keys
// share a hash tag, so one shard).
func (a *Answers) Share(ctx context.Context, issuer, token string, body []byte, jwt bool, at time.Time, ttl time.Duration) error {
	s := a.s
	c, ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	key := a.key(issuer, token, ":a")
	sealed := a.seal(key, body, jwt, at)
	start := time.Now()
	var firstErr error
	for _, r := range c.DoMulti(ctx,
		c.B().Set().Key(key).Value(valkey.BinaryString(sealed)).Px(max(ttl, time.Millisecond)).Build(),
		c.B().Del().Key(a.key(issuer, token, ":c")).Build()) {
		if err := r.Error(); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	s.m.observe(opAnswerPut, time.Since(start), firstErr)
	if firstErr != nil {
		s.failed(firstErr)
		return fmt.Errorf("%w: %v", ErrUnavailable, firstErr)
	}
	s.fails.Store(0)
	s.m.shared.Inc()
	return nil
}

// Release drops a claim without an answer (the IdP failed): the others go ahead.
func (a *Answers) Release(ctx context.Context, issuer, token string) {
	s := a.s
	c, ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return
	}
	defer cancel()
	start := time.Now()
	err = c.Do(ctx, c.B().Del().Key(a.key(issuer, token, ":c")).Build()).Error()
	s.m.observe(opClaim, time.Since(start), err)
	if err != nil {
		s.failed(err)
	}
}

// key is prefix + "intro:{" + base64url(HMAC(issuer, token))[:18 bytes] + "}" + suffix.
func (a *Answers) key(issuer, token, suffix string) string {
	h := a.macs.Get().(hash.Hash)
	h.Reset() // back to the keyed state (saved by the first Reset)
	h.Write(bytesOf(issuer))
	h.Write(separator)
	h.Write(bytesOf(token))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	a.macs.Put(h)
	var enc [24]byte
	base64.RawURLEncoding.Encode(enc[:], sum[:18])
	return a.s.key("intro:{", string(enc[:]), "}", suffix)
}

var separator = []byte{0}

// bytesOf is s's bytes, not copied, for functions that only read them (hashing, associated
// data): a Check must not copy its token once more.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

const (
	sealVersion = 1
	kindJSON    = 'j'
	kindJWT     = 'w'
	headerLen   = 1 + 1 + 8 // version, kind, received (unix ms)
)

// seal is nonce || AES-GCM(version, kind, received, body) with the store key as associated
// data, so an entry copied under another key does not open.
func (a *Answers) seal(key string, body []byte, jwt bool, at time.Time) []byte {
	plain := make([]byte, headerLen, headerLen+len(body))
	plain[0], plain[1] = sealVersion, kindJSON
	if jwt {
		plain[1] = kindJWT
	}
	binary.BigEndian.PutUint64(plain[2:], uint64(at.UnixMilli()))
	plain = append(plain, body...)
	out := make([]byte, a.aead.NonceSize(), a.aead.NonceSize()+len(plain)+a.aead.Overhead())
	_, _ = rand.Read(out)
	return a.aead.Seal(out, out, plain, bytesOf(key))
}

func (a *Answers) open(key string, sealed []byte) ([]byte, bool, time.Time, error) {
	n := a.aead.NonceSize()
	if len(sealed) < n+headerLen+a.aead.Overhead() {
		return nil, false, time.Time{}, errors.New("too short")
	}
	plain, err := a.aead.Open(nil, sealed[:n], sealed[n:], bytesOf(key))
	if err != nil {
		return nil, false, time.Time{}, err
	}
	if plain[0] != sealVersion || (plain[1] != kindJSON && plain[1] != kindJWT) {
		return nil, false, time.Time{}, errors.New("unknown format")
	}
	at := time.UnixMilli(int64(binary.BigEndian.Uint64(plain[2:])))
	return plain[headerLen:], plain[1] == kindJWT, at, nil
}
