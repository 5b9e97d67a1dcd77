package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/extauthz/introspect"
	"github.com/scopegate/scopegate/internal/contract"
)

// DeadlineMargin is kept back from a Check's deadline when it waits on an introspection call
// (the same rule as key fetches): the answer must reach Envoy before Envoy gives up.
const DeadlineMargin = 50 * time.Millisecond

// errIntrospectionUnavailable: no answer in time, nothing cached to fall back on (503).
var errIntrospectionUnavailable = denial.New(denial.Unavailable, contract.ReasonIntrospectionUnavailable,
	"the token could not be checked with its issuer in time")

// errIntrospectionOverloaded: the issuer already has max_concurrent calls in flight, so a
// new token is not sent (503 at once, well before the deadline).
var errIntrospectionOverloaded = denial.New(denial.Unavailable, contract.ReasonIntrospectionOverloaded,
	"too many tokens are being checked with their issuer; try again later")

// errBusy is the flight's result when no call slot was free.
var errBusy = errors.New("introspection: max_concurrent calls in flight")

// outcome is one introspection's result, shared by every Check that waited on it.
type outcome struct {
	id  *Identity
	err *denial.Denial
}

// route picks the issuer an opaque token goes to: the first introspecting issuer, in file
// order, whose token_prefix the token starts with (no prefix: every token). Exactly one
// issuer is asked, so a token is never shown to an IdP that the routing did not choose.
func (v *Verifier) route(raw string) *issuer {
	for _, is := range v.introspecting {
		if strings.HasPrefix(raw, is.cfg.Introspection.TokenPrefix) {
			return is
		}
	}
	return nil
}

// introspect checks an opaque token with its issuer. Concurrent Checks of one token share
// one call; the call runs on its own (bounded by fetch_timeout), so its answer is cached even
// if every waiter's deadline passed. A waiter waits until its deadline less DeadlineMargin;
// then, or when the call fails, a stale positive answer (past cache_ttl, before exp) stands
// in, else 503.
func (v *Verifier) introspect(ctx context.Context, raw string, key *[32]byte, stale *entry) (*Identity, error) {
	is := v.route(raw)
	if is == nil {
		_, err := split(raw) // as without introspection: malformed, or JWE not accepted
		return nil, err
	}
	return v.introspectWith(ctx, is, raw, key, stale)
}

// jwsFallback picks the issuer a JWS that failed verification may be introspected by: its
// issuer (the only one, or the one its unverified iss names) when that issuer has
// introspection with introspect_jws; nil otherwise.
func (v *Verifier) jwsFallback(raw string) *issuer {
	is := v.only
	if is == nil {
		tok, err := split(raw)
		if err != nil {
			return nil
		}
		payload, derr := decodeSegment(nil, tok.payload)
		if derr != nil {
			return nil
		}
		var c struct {
			Iss string `json:"iss"`
		}
		if json.Unmarshal(payload, &c) != nil {
			return nil
		}
		is = v.byIss[c.Iss]
	}
	if is == nil || is.intro == nil || !is.cfg.Introspection.IntrospectJWS {
		return nil
	}
	return is
}

func (v *Verifier) introspectWith(ctx context.Context, is *issuer, raw string, key *[32]byte, stale *entry) (*Identity, error) {
	dl, hasDeadline := ctx.Deadline()
	// Another replica's answer is read here, on the Check's own goroutine; only when the
	// store has none does the Check join the call that asks the IdP.
	found := introspect.Lookup(0)
	if !hasDeadline || time.Until(dl) > DeadlineMargin {
		var r *introspect.Response
		if r, found = is.intro.SharedAnswer(ctx, raw); r != nil {
			is.imetrics.Miss()
			o, err := v.settle(ctx, is, key, r)
			if err != nil {
				return v.unavailable(is, stale)
			}
			return o.id, o.errOrNil()
		}
	}
	ch := v.join(ctx, is, raw, *key, found)
	is.imetrics.Miss() // after joining the call: a test can tell when every waiter has
	var budget <-chan time.Time
	if hasDeadline {
		left := time.Until(dl) - DeadlineMargin
		if left <= 0 {
			return v.unavailable(is, stale)
		}
		t := time.NewTimer(left)
		defer t.Stop()
		budget = t.C
	}
	select {
	case res := <-ch:
		if res.Err == errBusy {
			return v.overloaded(is, stale)
		}
		if res.Err != nil {
			return v.unavailable(is, stale)
		}
		o := res.Val.(outcome)
		return o.id, o.errOrNil()
	case <-budget:
	case <-ctx.Done():
	}
	return v.unavailable(is, stale)
}

// join joins (or starts) the call asking is about the token keyed k, going on from what the
// shared store was found to hold (found).
func (v *Verifier) join(ctx context.Context, is *issuer, raw string, k [32]byte, found introspect.Lookup) <-chan singleflight.Result {
	return v.flight.DoChan(string(k[:]), func() (any, error) {
		timeout := is.cfg.FetchTimeout
		if timeout <= 0 {
			timeout = 5 * time.Second // config defaults it; a hand-built Issuer may not
		}
		// A call that finished while this Check read the store has left its answer here.
		if o, ok := v.cached(&k, is); ok {
			return o, nil
		}
		// Each distinct token costs a call that outlives its Check: at most max_concurrent
		// of them run at once, whatever a flood of junk tokens asks.
		if !is.intro.TryAcquire() {
			return nil, errBusy
		}
		defer is.intro.Release()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		r, err := is.intro.IntrospectAfter(cctx, raw, found)
		if err != nil {
			v.log.Warn("token introspection failed", "issuer", is.cfg.Name, "error", err)
			return nil, err
		}
		return v.settle(cctx, is, &k, r)
	})
}

// errOrNil is o's refusal as an error (a nil *denial.Denial is a nil error).
func (o outcome) errOrNil() error {
	if o.err != nil {
		return o.err
	}
	return nil
}

// settle checks an answer (a signed one is verified first: its failure is the IdP's side, an
// error) and caches it, its cache life counted from when the IdP gave it (r.Age: another
// replica may have asked a while ago).
func (v *Verifier) settle(ctx context.Context, is *issuer, k *[32]byte, r *introspect.Response) (outcome, error) {
	age := r.Age
	if r.JWT != "" {
		var err error
		if r, err = is.verifyIntrospectionJWT(ctx, r.JWT); err != nil {
			v.log.Warn("token introspection failed", "issuer", is.cfg.Name, "error", err)
			return outcome{}, err
		}
	}
	now := v.now()
	id, terr := is.fromIntrospection(r, now)
	v.remember(k, is, id, terr, now.Add(-age))
	return outcome{id: id, err: terr}, nil
}

// cached is a fresh answer of is about the token keyed k in the replica's cache.
func (v *Verifier) cached(k *[32]byte, is *issuer) (outcome, bool) {
	if v.cache == nil {
		return outcome{}, false
	}
	if e := v.cache.get(k); e != nil && e.is == is && v.now().UnixNano() < e.expiry {
		return outcome{id: e.id, err: e.err}, true
	}
	return outcome{}, false
}

func (v *Verifier) overloaded(is *issuer, stale *entry) (*Identity, error) {
	if stale != nil && v.now().UnixNano() < stale.stale {
		is.imetrics.Stale()
		return stale.id, nil
	}
	is.imetrics.Failed()
	return nil, errIntrospectionOverloaded
}

func (v *Verifier) unavailable(is *issuer, stale *entry) (*Identity, error) {
	if stale != nil && v.now().UnixNano() < stale.stale {
		is.imetrics.Stale()
		return stale.id, nil
	}
	is.imetrics.Failed()
	return nil, errIntrospectionUnavailable
}

// remember caches an answer: a positive one fresh until min(exp, now + cache_ttl) and usable
// as a fallback until exp; a refusal for negative_cache_ttl.
func (v *Verifier) remember(key *[32]byte, is *issuer, id *Identity, terr *denial.Denial, now time.Time) {
	if v.cache == nil {
		return
	}
	in := is.cfg.Introspection
	n := now.UnixNano()
	if terr != nil {
		if in.NegativeCacheTTL > 0 {
			v.cache.put(key, &entry{is: is, err: terr, expiry: n + int64(in.NegativeCacheTTL)}, n)
		}
		return
	}
	exp := id.ExpiresAt.UnixNano()
	fresh := min(exp, n+int64(in.CacheTTL))
	if fresh <= n {
		return // inside the leeway past exp: accepted once, never reused
	}
	v.cache.put(key, &entry{is: is, id: id, expiry: fresh, stale: exp}, n)
}

// fromIntrospection checks an answer as strictly as a JWT's claims and builds the identity.
func (is *issuer) fromIntrospection(r *introspect.Response, now time.Time) (*Identity, *denial.Denial) {
	c := &is.cfg
	switch {
	case !r.Active:
		return nil, refuse(contract.ReasonInactive, "the token is not active")
	case r.Exp == 0:
		return nil, refuse(contract.ReasonMissingExp, "the token has no expiry")
	case now.After(time.Unix(r.Exp, 0).Add(c.Leeway)):
		return nil, refuse(contract.ReasonExpired, "the token has expired")
	case r.Nbf != 0 && now.Add(c.Leeway).Before(time.Unix(r.Nbf, 0)):
		return nil, refuse(contract.ReasonNotYetValid, "the token is not valid yet")
	case r.Iss != "" && r.Iss != c.Issuer:
		return nil, refuse(contract.ReasonUnknownIssuer, "the token's issuer is not trusted")
	case len(r.Aud) > 0 && !anyIn(r.Aud, c.Audiences):
		return nil, refuse(contract.ReasonWrongAudience, "the token is not meant for this audience")
	case len(r.Aud) == 0 && !c.Introspection.AllowMissingAudience:
		// Without aud nothing says the token is meant for us: a token for another API of the
		// same provider would pass. Some providers never send it (allow_missing_audience).
		return nil, refuse(contract.ReasonWrongAudience, "the introspection answer names no audience")
	case r.TokenType != "" && !strings.EqualFold(r.TokenType, "bearer") && !strings.EqualFold(r.TokenType, "access_token") &&
		!(strings.EqualFold(r.TokenType, "DPoP") && r.JKT != ""):
		// refresh_token, id_token and anything unknown: only access tokens open the API.
		return nil, refuse(contract.ReasonWrongTyp, "the token type is not accepted here")
	case r.TokenUse != "" && !strings.EqualFold(r.TokenUse, "access") && !strings.EqualFold(r.TokenUse, "access_token"):
		// token_use (as Amazon Cognito names it): "refresh", "id" and the like are refused.
		return nil, refuse(contract.ReasonWrongTyp, "the token type is not accepted here")
	case r.UnsupportedCnf:
		return nil, errBadCnf
	}
	id := &Identity{Source: SourceIntrospection, Issuer: c.Name, Iss: r.Iss, Subject: r.Sub, ClientID: r.ClientID,
		JTI: r.JTI, Audience: r.Aud, Scopes: strings.Fields(r.Scope), ExpiresAt: time.Unix(r.Exp, 0), raw: r.Raw,
		JKT: r.JKT, X5T: r.X5T, RequireBinding: c.RequireBinding, ACR: r.ACR, AMR: r.AMR, Leeway: c.Leeway}
	if id.Iss == "" {
		id.Iss = c.Issuer
	}
	if id.Scopes == nil {
		id.Scopes = []string{}
	}
	id.ScopeString = strings.Join(id.Scopes, " ")
	if r.Iat != 0 {
		id.IssuedAt = time.Unix(r.Iat, 0)
	}
	if r.AuthTime > 0 {
		id.AuthTime = time.Unix(r.AuthTime, 0)
	}
	return id, nil
}

func anyIn(have, want []string) bool {
	for _, h := range have {
		for _, w := range want {
			if h == w {
				return true
			}
		}
	}
	return false
}

// introspectionJWTType is the typ of an RFC 9701 response (media type without application/).
const introspectionJWTType = "token-introspection+jwt"

// verifyIntrospectionJWT checks an RFC 9701 response as strictly as an access token: a JWS
// by one of the issuer's keys (its algorithm allow-list, typ token-introspection+jwt, no
// crit), iss the issuer, aud naming scopegate's introspection client, iat present. Its
// token_introspection claim is the answer, parsed like a JSON one. Every failure is the
// IdP's side (ErrUnavailable): 503, never cached.
func (is *issuer) verifyIntrospectionJWT(ctx context.Context, jws string) (*introspect.Response, error) {
	fail := func(format string, args ...any) (*introspect.Response, error) {
		return nil, fmt.Errorf("%w: signed response of %s: %s", introspect.ErrUnavailable, is.cfg.Name, fmt.Sprintf(format, args...))
	}
	if is.keys == nil {
		return fail("the issuer has no keys to verify it with")
	}
	tok, terr := split(jws)
	if terr != nil {
		return fail("%s", terr.Description)
	}
	var hb [256]byte
	h, terr := readHeader(tok.header, hb[:])
	if terr != nil {
		return fail("%s", terr.Description)
	}
	method := is.methods[h.alg]
	switch {
	case !h.algOK || method == nil:
		return fail("signing algorithm not accepted")
	case h.crit:
		return fail("critical header extension")
	case normTyp(h.typ) != introspectionJWTType:
		return fail("typ is not %s", introspectionJWTType)
	case h.hasKID && !h.kidOK:
		return fail("kid is not a string")
	}
	sig, err := decodeSegment(nil, tok.signature)
	if err != nil {
		return fail("signature is not base64url")
	}
	verified := false
	if h.hasKID {
		key, err := is.keys.Lookup(ctx, h.kid, h.alg)
		if err != nil {
			return fail("signing key: %v", err)
		}
		verified = key.Allows(h.alg) == nil && method.Verify(tok.signed, sig, key.Public) == nil
	} else {
		for _, key := range is.keys.Current().All() {
			if key.Allows(h.alg) == nil && method.Verify(tok.signed, sig, key.Public) == nil {
				verified = true
				break
			}
		}
	}
	if !verified {
		return fail("signature is invalid")
	}
	payload, err := decodeSegment(nil, tok.payload)
	if err != nil {
		return fail("payload is not base64url")
	}
	var c struct {
		Iss string          `json:"iss"`
		Aud json.RawMessage `json:"aud"`
		Iat *float64        `json:"iat"`
		TI  json.RawMessage `json:"token_introspection"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return fail("claims are not a JSON object of the expected types")
	}
	var auds []string
	if json.Unmarshal(c.Aud, &auds) != nil {
		var one string
		if json.Unmarshal(c.Aud, &one) == nil {
			auds = []string{one}
		}
	}
	switch {
	case c.Iss != is.cfg.Issuer:
		return fail("iss is not the issuer")
	case !anyIn(auds, []string{is.cfg.Introspection.ClientID}):
		return fail("aud does not name client %s", is.cfg.Introspection.ClientID)
	case c.Iat == nil:
		return fail("no iat")
	case len(c.TI) == 0:
		return fail("no token_introspection claim")
	}
	r, err := introspect.Parse(c.TI)
	if err != nil {
		return fail("token_introspection: %v", err)
	}
	return r, nil
}
