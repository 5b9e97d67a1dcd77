package introspect

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// Shared is where replicas share introspection answers (sharedstate.Answers is one): what
// the IdP answered about a token, stored by the replica that asked, read by every other.
type Shared interface {
	// Answer returns the body the IdP sent about (issuer, token) to some replica (a JSON
	// object, or a signed JWT when jwt) and when; ok false: none yet.
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
	return Parse(body)
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
	body, jwt := r.Raw, false
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
