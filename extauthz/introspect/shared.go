package introspect

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Shared is where replicas share introspection answers (sharedstate.Answers is one): what
// the IdP answered about a token, stored by the replica that asked, read by every other.
type Shared interface {
	// Answer returns what the IdP answered about (issuer, token) to some replica (the answer
	// as read, or the signed JWT when jwt) and when; ok false: none yet.
	Answer(ctx context.Context, issuer, token string) (body []byte, jwt bool, at time.Time, ok bool, err error)
	// Claim asks for the right to call the IdP about the token for up to ttl; false: another
	// replica is calling, and its answer will appear.
	Claim(ctx context.Context, issuer, token string, ttl time.Duration) (bool, error)
	// Share stores the answer for ttl and drops the claim.
	Share(ctx context.Context, issuer, token string, body []byte, jwt bool, at time.Time, ttl time.Duration) error
	// Release drops a claim without an answer.
	Release(ctx context.Context, issuer, token string)
}

// Waiting for another replica's answer: first poll after sharedPollMin, doubling to
// sharedPollMax, for as long as that replica's claim may last (Timeout).
const (
	sharedPollMin = 2 * time.Millisecond
	sharedPollMax = 50 * time.Millisecond
)

// viaShared is Introspect with answers shared between replicas: another replica's answer if
// there is one; else, if no other replica is asking, ask the IdP and share the answer; else
// wait for that replica's answer, asking ourselves if none comes within Timeout. Any failure
// of the store is the same as no store: the IdP is asked.
func (c *Client) viaShared(ctx context.Context, token string) (*Response, error) {
	sh := c.o.Shared
	giveUp := time.Now().Add(c.o.Timeout)
	wait := sharedPollMin
	for {
		body, jwt, at, ok, err := sh.Answer(ctx, c.o.Name, token)
		if err != nil {
			return c.ask(ctx, token)
		}
		if ok {
			if r, err := fromShared(body, jwt); err == nil {
				r.Age = max(0, time.Since(at))
				return r, nil
			}
		}
		won, err := sh.Claim(ctx, c.o.Name, token, c.o.Timeout)
		if err != nil {
			return c.ask(ctx, token)
		}
		if won {
			r, err := c.ask(ctx, token)
			c.share(ctx, token, r, err)
			return r, err
		}
		if time.Now().Add(wait).After(giveUp) {
			return c.ask(ctx, token) // the other replica's call is taking too long (or it died)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, sharedPollMax)
	}
}

func fromShared(body []byte, jwt bool) (*Response, error) {
	if jwt {
		return &Response{JWT: string(body)}, nil // verified by the caller, as from the IdP
	}
	return decodeShared(body)
}

// share stores what the IdP answered, for as long as this replica would cache it: a positive
// answer until min(exp, now + CacheTTL), an inactive one NegativeCacheTTL. A failed call is
// not shared: the claim is released so others ask for themselves.
func (c *Client) share(ctx context.Context, token string, r *Response, callErr error) {
	ttl := time.Duration(0)
	if callErr == nil {
		ttl = c.sharedTTL(r, time.Now())
	}
	if ttl <= 0 {
		c.o.Shared.Release(ctx, c.o.Name, token)
		return
	}
	body, jwt := encodeShared(r), false
	if r.JWT != "" {
		body, jwt = []byte(r.JWT), true
	}
	_ = c.o.Shared.Share(ctx, c.o.Name, token, body, jwt, time.Now(), ttl)
}

func (c *Client) sharedTTL(r *Response, now time.Time) time.Duration {
	a := r
	if r.JWT != "" {
		// Unverified here, for the lifetime only: every reader verifies the JWT itself.
		parts := strings.Split(r.JWT, ".")
		if len(parts) != 3 {
			return 0
		}
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			return 0
		}
		var claims struct {
			TI json.RawMessage `json:"token_introspection"`
		}
		if json.Unmarshal(payload, &claims) != nil || len(claims.TI) == 0 {
			return 0
		}
		if a, err = Parse(claims.TI); err != nil {
			return 0
		}
	}
	if !a.Active || a.Exp == 0 {
		return c.o.NegativeCacheTTL
	}
	if ttl := min(time.Unix(a.Exp, 0).Sub(now), c.o.CacheTTL); ttl > 0 {
		return ttl
	}
	return c.o.NegativeCacheTTL // expired: every replica refuses it
}

// encodeShared writes an answer as Parse read it, so a replica that reads it from the store
// does not parse the JSON again: the store's entry is sealed, so it is what a replica wrote.
// Version 1: flags (active), the string members, aud, exp, iat, nbf, then Raw.
func encodeShared(r *Response) []byte {
	b := make([]byte, 0, 64+len(r.Raw)+len(r.Scope)+len(r.Sub))
	flags := byte(0)
	if r.Active {
		flags = 1
	}
	b = append(b, 1, flags)
	for _, s := range []string{r.Scope, r.ClientID, r.Sub, r.Iss, r.JTI, r.TokenType, r.JKT, r.X5T} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Aud)))
	for _, a := range r.Aud {
		b = binary.AppendUvarint(b, uint64(len(a)))
		b = append(b, a...)
	}
	b = binary.AppendVarint(b, r.Exp)
	b = binary.AppendVarint(b, r.Iat)
	b = binary.AppendVarint(b, r.Nbf)
	return append(b, r.Raw...)
}

var errSharedFormat = errors.New("shared answer: unknown format")

func decodeShared(b []byte) (*Response, error) {
	if len(b) < 2 || b[0] != 1 || b[1] > 1 {
		return nil, errSharedFormat
	}
	r := &Response{Active: b[1] == 1}
	b = b[2:]
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	for _, dst := range []*string{&r.Scope, &r.ClientID, &r.Sub, &r.Iss, &r.JTI, &r.TokenType, &r.JKT, &r.X5T} {
		var ok bool
		if *dst, ok = str(); !ok {
			return nil, errSharedFormat
		}
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, errSharedFormat
	}
	b = b[k:]
	if n > 0 {
		r.Aud = make([]string, n)
		for i := range r.Aud {
			var ok bool
			if r.Aud[i], ok = str(); !ok {
				return nil, errSharedFormat
			}
		}
	}
	for _, dst := range []*int64{&r.Exp, &r.Iat, &r.Nbf} {
		v, k := binary.Varint(b)
		if k <= 0 {
			return nil, errSharedFormat
		}
		*dst, b = v, b[k:]
	}
	r.Raw = b // the caller's own copy (opened from the store)
	return r, nil
}
