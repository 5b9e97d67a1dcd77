package introspect

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"

	"github.com/scopegate/scopegate/internal/oauth"
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

// Lookup is what SharedAnswer found when it found no answer; IntrospectAfter goes on from
// there.
type Lookup uint8

const (
	notRead     Lookup = iota // the store was not read: read it first
	storeMissed               // the store had no answer: claim the call (or wait for the claimant's answer)
	storeFailed               // the store failed: ask the IdP
)

// SharedAnswer is another replica's answer about token, read from the store (one GET)
// without claiming or asking anything: the answer, or (nil and) what was found instead, for
// IntrospectAfter. A Check reads it on its own goroutine, and only on a miss joins the call
// that asks the IdP: handing the read to the call's goroutine costs about as much again as
// the store's round trip (BenchmarkSharedState).
func (c *Client) SharedAnswer(ctx context.Context, token string) (*Response, Lookup) {
	if c.o.Shared == nil {
		return nil, storeFailed // no store: the IdP is the only source
	}
	body, jwt, at, ok, err := c.o.Shared.Answer(ctx, c.o.Name, token)
	switch {
	case err != nil:
		return nil, storeFailed
	case !ok:
		return nil, storeMissed
	}
	r, err := fromShared(body, jwt)
	if err != nil {
		return nil, storeMissed // an entry this version can't read is no answer
	}
	r.Age = max(0, time.Since(at))
	return r, notRead
}

// IntrospectAfter is Introspect going on from what SharedAnswer found, so the store is not
// read twice in a row: after a miss the call is claimed, after a failure the IdP is asked.
func (c *Client) IntrospectAfter(ctx context.Context, token string, found Lookup) (*Response, error) {
	if c.o.Shared == nil || found == storeFailed {
		return c.ask(ctx, token)
	}
	return c.viaShared(ctx, token, found == notRead)
}

// viaShared is Introspect with answers shared between replicas: another replica's answer if
// there is one (read unless the caller just did); else, if no other replica is asking, ask
// the IdP and share the answer; else wait for that replica's answer, asking ourselves if none
// comes within Timeout. Any failure of the store is the same as no store: the IdP is asked.
func (c *Client) viaShared(ctx context.Context, token string, read bool) (*Response, error) {
	sh := c.o.Shared
	giveUp := time.Now().Add(c.o.Timeout)
	wait := sharedPollMin
	for {
		if read {
			r, found := c.SharedAnswer(ctx, token)
			if r != nil {
				return r, nil
			}
			if found == storeFailed {
				return c.ask(ctx, token)
			}
		}
		read = true
		won, err := sh.Claim(ctx, c.o.Name, token, c.o.Timeout)
		if err != nil {
			return c.ask(ctx, token)
		}
		if won {
			// The claim may be ours because the claimant shared its answer (and dropped its
			// claim) between our read and our claim: Share writes the answer before it drops
			// the claim, so one more read sees it. It costs a round trip only on the way to
			// the IdP.
			if r, found := c.SharedAnswer(ctx, token); r != nil {
				sh.Release(ctx, c.o.Name, token)
				return r, nil
			} else if found == storeFailed {
				sh.Release(ctx, c.o.Name, token)
				return c.ask(ctx, token)
			}
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
		payload, err := oauth.UnverifiedPayload(r.JWT)
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
// Every member of Response that Parse fills is written: a member left out would read back
// as absent, and absent is often the permissive reading (no token_use, no cnf).
// Version 3: flags (active, unsupported cnf), the string members, aud, amr, exp, iat, nbf,
// auth_time, then Raw. Versions 1 (without token_use and the cnf flag) and 2 (without acr,
// amr and auth_time: a step-up route would see a fresh, strong sign-in as none) are not read.
func encodeShared(r *Response) []byte {
	b := make([]byte, 0, 64+len(r.Raw)+len(r.Scope)+len(r.Sub))
	flags := byte(0)
	if r.Active {
		flags |= flagActive
	}
	if r.UnsupportedCnf {
		flags |= flagUnsupportedCnf
	}
	b = append(b, sharedVersion, flags)
	for _, s := range [...]string{r.Scope, r.ClientID, r.Sub, r.Iss, r.JTI, r.TokenType, r.TokenUse, r.JKT, r.X5T, r.ACR} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = appendList(b, r.Aud)
	b = appendList(b, r.AMR)
	for _, v := range [...]int64{r.Exp, r.Iat, r.Nbf, r.AuthTime} {
		b = binary.AppendVarint(b, v)
	}
	return append(b, r.Raw...)
}

// appendList writes a list member: its length, then each string with its length.
func appendList(b []byte, list []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(list)))
	for _, a := range list {
		b = binary.AppendUvarint(b, uint64(len(a)))
		b = append(b, a...)
	}
	return b
}

const (
	sharedVersion      = 3
	flagActive         = 1 << 0
	flagUnsupportedCnf = 1 << 1
	knownFlags         = flagActive | flagUnsupportedCnf
)

var errSharedFormat = errors.New("shared answer: unknown format")

func decodeShared(b []byte) (*Response, error) {
	if len(b) < 2 || b[0] != sharedVersion || b[1]&^knownFlags != 0 {
		return nil, errSharedFormat
	}
	r := &Response{Active: b[1]&flagActive != 0, UnsupportedCnf: b[1]&flagUnsupportedCnf != 0}
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
	for _, dst := range [...]*string{&r.Scope, &r.ClientID, &r.Sub, &r.Iss, &r.JTI, &r.TokenType, &r.TokenUse, &r.JKT, &r.X5T, &r.ACR} {
		var ok bool
		if *dst, ok = str(); !ok {
			return nil, errSharedFormat
		}
	}
	list := func() ([]string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)) {
			return nil, false
		}
		b = b[k:]
		if n == 0 {
			return nil, true
		}
		out := make([]string, n)
		for i := range out {
			var ok bool
			if out[i], ok = str(); !ok {
				return nil, false
			}
		}
		return out, true
	}
	for _, dst := range [...]*[]string{&r.Aud, &r.AMR} {
		var ok bool
		if *dst, ok = list(); !ok {
			return nil, errSharedFormat
		}
	}
	for _, dst := range [...]*int64{&r.Exp, &r.Iat, &r.Nbf, &r.AuthTime} {
		v, k := binary.Varint(b)
		if k <= 0 {
			return nil, errSharedFormat
		}
		*dst, b = v, b[k:]
	}
	r.Raw = b // the caller's own copy (opened from the store)
	return r, nil
}
