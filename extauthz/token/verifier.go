package token

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fastjson"
	"golang.org/x/sync/singleflight"

	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/extauthz/introspect"
	"github.com/scopegate/scopegate/extauthz/jwks"
	"github.com/scopegate/scopegate/internal/contract"
)

// refuse is a refused token: 401 invalid_token. The reason is a fixed label (metric-safe);
// the description is short and never contains the token.
func refuse(reason, desc string) *denial.Denial { return denial.New(denial.InvalidToken, reason, desc) }

// errKeyFailure marks (as a refusal's Err) a token the issuer's keys could not verify
// (unknown kid, no key for its algorithm, bad signature) whose every local check without a
// key passed: the only refusals introspect_jws may hand to the issuer.
var errKeyFailure = errors.New("the issuer's keys can't verify the token")

// errNoKeys is our side's fault (the issuer's keys have not loaded): answered 503, not 401.
var errNoKeys = denial.New(denial.Unavailable, contract.ReasonNoKeys, "the issuer's keys are not available yet")

// errRefreshPending: a key refresh for the token's kid did not finish within the Check's
// deadline budget (jwks.DeadlineMargin before the deadline).
var errRefreshPending = denial.New(denial.Unavailable, contract.ReasonKeyRefreshPending, "the signing key could not be fetched in time")

// Issuer is a trusted issuer: what its tokens must carry, its key source (nil: opaque tokens
// only) and, for opaque tokens, its introspection client (nil: JWTs only). The wiring fills
// it from the authz config's issuers[], already defaulted and validated.
type Issuer struct {
	Name   string
	Issuer string // the exact iss of its tokens
	// Audiences: a token's aud must name one of them.
	Audiences []string
	// Algorithms is the allow-list of JWS algorithms (asymmetric only).
	Algorithms     []string
	ScopeClaims    []string
	ClientIDClaims []string
	// RequireTyp, when set, is the JWS typ header every token must carry ("at+jwt").
	RequireTyp string
	// Leeway is the clock skew allowed on exp, nbf, iat and auth_time.
	Leeway time.Duration
	// FetchTimeout bounds an introspection call when the Check has no deadline of its own.
	FetchTimeout time.Duration
	// RequireBinding refuses tokens that are not sender-constrained.
	RequireBinding bool
	// Introspection is how opaque tokens are answered (with Introspect); nil: JWTs only.
	Introspection *Introspection

	Keys       *jwks.Source
	Introspect *introspect.Client
}

// Introspection is what the verifier needs of an issuer's RFC 7662 introspection.
type Introspection struct {
	// ClientID is scopegate's client at the endpoint: a signed answer's aud must name it.
	ClientID string
	// TokenPrefix routes opaque tokens among introspecting issuers ("" takes every token).
	TokenPrefix string
	// IntrospectJWS sends a JWS the issuer's keys fail to verify to introspection.
	IntrospectJWS bool
	// AllowMissingAudience accepts an answer without aud.
	AllowMissingAudience bool
	// CacheTTL and NegativeCacheTTL are how long an active and a refused answer are reused.
	CacheTTL         time.Duration
	NegativeCacheTTL time.Duration
}

// Verifier checks tokens against the issuers and caches the result.
type Verifier struct {
	byIss   map[string]*issuer
	only    *issuer // the issuer, when exactly one is configured
	cache   *Cache
	now     func() time.Time
	metrics *Metrics
	log     *slog.Logger

	introspecting []*issuer // in file order: the routing order of opaque tokens
	flight        singleflight.Group
}

type issuer struct {
	cfg       Issuer
	keys      *jwks.Source
	methods   map[string]jwt.SigningMethod // the allow-list
	validator *jwt.Validator
	typ       string // lower-cased required typ, "" for none
	names     claimNames

	intro    *introspect.Client
	imetrics *introspect.IssuerMetrics
}

// Options configure a Verifier.
type Options struct {
	Issuers []Issuer
	Cache   *Cache
	Now     func() time.Time // nil: time.Now
	Metrics *Metrics
	Logger  *slog.Logger // nil: discard
}

// NewVerifier builds a verifier; every issuer gets its own jwt parser with its allow-list.
func NewVerifier(o Options) *Verifier {
	v := &Verifier{byIss: map[string]*issuer{}, cache: o.Cache, now: o.Now, metrics: o.Metrics, log: o.Logger}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	for _, is := range o.Issuers {
		c := is
		c.Keys, c.Introspect = nil, nil // held by the issuer's own fields below
		methods := map[string]jwt.SigningMethod{}
		for _, alg := range c.Algorithms {
			if m := jwt.GetSigningMethod(alg); m != nil {
				methods[alg] = m
			}
		}
		is2 := &issuer{
			cfg:     c,
			keys:    is.Keys,
			methods: methods,
			validator: jwt.NewValidator(
				jwt.WithIssuer(c.Issuer),
				jwt.WithAudience(c.Audiences...),
				jwt.WithExpirationRequired(),
				jwt.WithIssuedAt(),
				jwt.WithLeeway(c.Leeway),
				jwt.WithTimeFunc(func() time.Time { return v.now() }),
			),
			typ:   normTyp(c.RequireTyp),
			names: claimNames{scope: c.ScopeClaims, clientID: c.ClientIDClaims},
		}
		if is.Introspect != nil && c.Introspection != nil {
			is2.intro, is2.imetrics = is.Introspect, is.Introspect.Metrics()
			v.introspecting = append(v.introspecting, is2)
		}
		v.byIss[c.Issuer] = is2
	}
	if len(v.byIss) == 1 {
		for _, is := range v.byIss {
			v.only = is
		}
	}
	return v
}

// Run sweeps expired cache entries until ctx ends.
func (v *Verifier) Run(ctx context.Context) {
	if v.cache == nil {
		return
	}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			v.cache.sweep(v.now().UnixNano())
		}
	}
}

// Verify returns the token's identity, or a refusal (*denial.Denial).
func (v *Verifier) Verify(ctx context.Context, raw string) (*Identity, error) {
	var key [32]byte
	var stale *entry // an introspected answer past cache_ttl: the fallback if the IdP fails
	if v.cache != nil {
		key = sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
		if e := v.cache.get(&key); e != nil {
			now := v.now().UnixNano()
			switch {
			case e.is != nil:
				if now < e.expiry {
					if e.err != nil {
						e.is.imetrics.NegativeHit()
						return nil, e.err
					}
					e.is.imetrics.Hit()
					return e.id, nil
				}
				if e.err == nil && now < e.stale {
					stale = e
				} else {
					v.cache.drop(&key, e)
				}
			case now < e.expiry && v.byIss[e.id.Iss].keys.Current().Still(e.kid, e.fp):
				v.metrics.hit()
				return e.id, nil
			default:
				v.cache.drop(&key, e)
			}
		}
	}
	if len(v.introspecting) > 0 && strings.Count(raw, ".") != 2 {
		// Not a JWS (opaque, or JWE-shaped as zitadel's are): only its issuer can read it.
		if v.cache == nil {
			key = sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
		}
		return v.introspect(ctx, raw, &key, stale)
	}
	if v.cache != nil {
		v.metrics.miss()
	}
	id, kid, fp, err := v.verify(ctx, raw)
	if err != nil {
		// introspect_jws: a JWS its issuer's keys can't vouch for (say, signed with a key it
		// does not publish) is the issuer's to judge. Nothing else is: not our own faults
		// (503), and never a JWS whose claims fail a local check (aud, iss, exp, typ, ...),
		// which an introspection answer that omits them must not wave through.
		if errors.Is(err, errKeyFailure) && len(v.introspecting) > 0 {
			if is := v.jwsFallback(raw); is != nil {
				if v.cache == nil {
					key = sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
				}
				return v.introspectWith(ctx, is, raw, &key, stale)
			}
		}
		return nil, err
	}
	if v.cache != nil && kid != "" {
		// An entry never outlives exp (leeway is for clock skew at verification, not a grace period).
		v.cache.put(&key, &entry{id: id, expiry: id.ExpiresAt.UnixNano(), kid: kid, fp: fp}, v.now().UnixNano())
	}
	return id, nil
}

func (v *Verifier) verify(ctx context.Context, raw string) (*Identity, string, [32]byte, error) {
	var fp [32]byte
	tok, rerr := split(raw)
	if rerr != nil {
		return nil, "", fp, rerr
	}
	sc := scratches.Get().(*scratch)
	defer scratches.Put(sc)
	h, rerr := readHeader(tok.header, sc.header[:])
	if rerr != nil {
		return nil, "", fp, rerr
	}
	payload, err := decodeSegment(nil, tok.payload) // kept by the identity: its own slice
	if err != nil {
		return nil, "", fp, refuse(contract.ReasonMalformed, "the token payload is not base64url")
	}
	p := parsers.Get()
	defer parsers.Put(p)
	obj, err := parseObject(p, payload)
	if err != nil {
		return nil, "", fp, refuse(contract.ReasonMalformed, "the token payload is not a JSON object")
	}
	is := v.only
	if is == nil {
		// Several issuers: the unverified iss picks the keys and rules. With one, the
		// Validator's exact iss check alone suffices.
		iss := obj.Get("iss")
		if iss == nil || iss.Type() == fastjson.TypeNull {
			return nil, "", fp, refuse(contract.ReasonUnknownIssuer, "the token has no issuer")
		}
		if iss.Type() != fastjson.TypeString {
			return nil, "", fp, refuse(contract.ReasonMalformed, "the iss claim is not a string")
		}
		if is = v.byIss[string(iss.GetStringBytes())]; is == nil {
			return nil, "", fp, refuse(contract.ReasonUnknownIssuer, "the token's issuer is not trusted").WithDetail(
				issuerDetail(string(iss.GetStringBytes()), v.issuers()))
		}
	}
	if is.keys == nil {
		return nil, "", fp, refuse(contract.ReasonUnsupportedToken, "this issuer's tokens are accepted by introspection only, not as a JWS")
	}
	claims := &accessClaims{names: &is.names}
	if err := claims.read(obj, payload); err != nil {
		return nil, "", fp, refuse(contract.ReasonMalformed, "the token names a claim twice")
	}
	// The allow-list is checked before any key is looked up ("none" and HS* never are on it).
	method := is.methods[h.alg]
	if !h.algOK || method == nil {
		return nil, "", fp, refuse(contract.ReasonAlgNotAllowed, "the token's signing algorithm is not accepted")
	}
	sig, err := decodeSegment(sc.sig[:], tok.signature)
	if err != nil {
		return nil, "", fp, refuse(contract.ReasonMalformed, "the token signature is not base64url")
	}
	if e := checkHeader(&h, is.typ); e != nil {
		if e.Reason == contract.ReasonWrongTyp {
			e = e.WithDetail(fmt.Sprintf("typ %q, want %q (require_typ)", clip(h.typ), is.cfg.RequireTyp))
		}
		return nil, "", fp, e
	}
	if is.keys.Current().Len() == 0 {
		return nil, "", fp, errNoKeys
	}

	var kid string
	if !h.hasKID {
		// No kid: try each key that can verify this algorithm.
		var tried, ok bool
		for _, key := range is.keys.Current().All() {
			if key.Allows(h.alg) != nil {
				continue
			}
			tried = true
			if method.Verify(tok.signed, sig, key.Public) == nil {
				kid, fp, ok = key.KID, key.Fingerprint, true
				break
			}
		}
		if !tried {
			return nil, "", fp, is.keyFailure(claims, refuse(contract.ReasonKeyMismatch, "no key of the issuer can verify this algorithm"), v.now())
		}
		if !ok {
			return nil, "", fp, is.keyFailure(claims, refuse(contract.ReasonBadSignature, "the token signature is invalid"), v.now())
		}
	} else {
		if !h.kidOK {
			return nil, "", fp, refuse(contract.ReasonMalformed, "the kid header is not a string")
		}
		key, err := is.keys.Lookup(ctx, h.kid, h.alg)
		switch {
		case errors.Is(err, jwks.ErrNoKeys):
			return nil, "", fp, errNoKeys
		case errors.Is(err, jwks.ErrRefreshPending):
			// The IdP is slow or unreachable: the kid may be a real new key. Our side's
			// fault, answered in time with 503 and Retry-After rather than after Envoy's timeout.
			return nil, "", fp, errRefreshPending
		case err != nil:
			return nil, "", fp, is.keyFailure(claims, refuse(contract.ReasonUnknownKID, "the signing key is not known"), v.now())
		}
		if err := key.Allows(h.alg); err != nil {
			return nil, "", fp, is.keyFailure(claims, refuse(contract.ReasonKeyMismatch, "the signing key can't verify this algorithm"), v.now())
		}
		if method.Verify(tok.signed, sig, key.Public) != nil {
			return nil, "", fp, is.keyFailure(claims, refuse(contract.ReasonBadSignature, "the token signature is invalid"), v.now())
		}
		kid, fp = key.KID, key.Fingerprint
	}
	if e := is.checkClaims(claims, v.now()); e != nil {
		return nil, "", fp, e
	}
	id := newIdentity(is.cfg.Name, claims, kid)
	id.RequireBinding, id.Leeway = is.cfg.RequireBinding, is.cfg.Leeway
	return id, kid, fp, nil
}

// checkClaims applies the issuer's rules to a token's claims: exact iss, aud, exp required,
// nbf and iat with leeway (jwt/v5's Validator), then the scope and cnf claims' shapes.
func (is *issuer) checkClaims(claims *accessClaims, now time.Time) *denial.Denial {
	if err := is.validator.Validate(claims); err != nil {
		e := classify(err, claims)
		if d := is.detail(e.Reason, claims, now); d != "" {
			e = e.WithDetail(d)
		}
		return e
	}
	if claims.badScope != "" {
		return scopeClaimError(claims.badScope)
	}
	if claims.badCnf {
		return errBadCnf
	}
	if claims.badAuthn != nil {
		return claims.badAuthn
	}
	return nil
}

// keyFailure is e, a refusal because the issuer's keys can't verify the JWS. For an issuer
// with introspect_jws, the JWS may still go to introspection, but only if its claims pass
// every local check first (a JWS for another audience, expired, ... is refused here, as
// it would be with a known key); e is then marked for the fallback.
func (is *issuer) keyFailure(claims *accessClaims, e *denial.Denial, now time.Time) *denial.Denial {
	if is.intro == nil || !is.cfg.Introspection.IntrospectJWS {
		return e
	}
	if ce := is.checkClaims(claims, now); ce != nil {
		return ce
	}
	e.Err = errKeyFailure
	return e
}

// checkHeader applies what jwt/v5 leaves to us: typ (RFC 9068 §4) and crit (RFC 7515
// §4.1.11: we implement no extension, so any crit is refused). jku, x5u and x5c are never read.
func checkHeader(h *joseHeader, wantTyp string) *denial.Denial {
	if h.crit {
		return refuse(contract.ReasonUnsupportedCrit, "the token names a critical header extension")
	}
	if wantTyp != "" {
		if normTyp(h.typ) != wantTyp {
			return refuse(contract.ReasonWrongTyp, "the token type is not accepted here")
		}
	}
	return nil
}

// normTyp lower-cases a media type and drops an "application/" prefix (RFC 7515 §4.1.9).
func normTyp(t string) string {
	t = strings.ToLower(t)
	return strings.TrimPrefix(t, "application/")
}

// classify maps jwt/v5's errors to our reasons by its sentinels alone, never by message text
// (which jwt may reword in any release); which required claim is missing is read from our
// own claims. Descriptions are fixed strings: nothing of the error itself reaches the client.
func classify(err error, c *accessClaims) *denial.Denial {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse(contract.ReasonMalformed, "the token is malformed")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refuse(contract.ReasonBadSignature, "the token signature is invalid")
	case errors.Is(err, jwt.ErrInvalidType):
		return refuse(contract.ReasonMalformed, "a registered claim has the wrong type")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		switch {
		case c.exp == nil:
			return refuse(contract.ReasonMissingExp, "the token has no expiry")
		case c.iss == "":
			return refuse(contract.ReasonUnknownIssuer, "the token has no issuer")
		}
		return refuse(contract.ReasonMissingClaim, "the token lacks a required claim")
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse(contract.ReasonExpired, "the token has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return refuse(contract.ReasonNotYetValid, "the token is not valid yet")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return refuse(contract.ReasonIssuedInFuture, "the token was issued in the future")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refuse(contract.ReasonWrongAudience, "the token is not meant for this audience")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return refuse(contract.ReasonUnknownIssuer, "the token's issuer is not trusted")
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return refuse(contract.ReasonInvalidClaims, "the token's claims are invalid")
	}
	return errUnverifiable
}

// errUnverifiable is any other validation failure: a fixed description, since what it wraps
// (types, messages) is ours and jwt's business, not the client's.
var errUnverifiable = refuse(contract.ReasonInvalidToken, "the token could not be verified")

// detail says what differs between a token's claims and the issuer's config, for the reason
// the token was refused: the claim values and the configured ones, never the token.
func (is *issuer) detail(reason string, c *accessClaims, now time.Time) string {
	at := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	leeway := is.cfg.Leeway.String()
	switch reason {
	case contract.ReasonWrongAudience:
		aud := make([]string, 0, len(c.aud))
		for _, a := range c.aud {
			aud = append(aud, clip(a))
		}
		return fmt.Sprintf("aud %q, want one of %q (audiences)", aud, is.cfg.Audiences)
	case contract.ReasonUnknownIssuer:
		if c.iss == "" {
			return "the token has no iss claim"
		}
		return issuerDetail(c.iss, []string{is.cfg.Issuer})
	case contract.ReasonExpired:
		if c.exp != nil {
			return fmt.Sprintf("exp %s, now %s: expired %s ago (leeway %s)", at(c.exp.Time), at(now), now.Sub(c.exp.Time).Truncate(time.Second), leeway)
		}
	case contract.ReasonNotYetValid:
		if c.nbf != nil {
			return fmt.Sprintf("nbf %s, now %s: valid in %s (leeway %s; clock skew?)", at(c.nbf.Time), at(now), c.nbf.Sub(now).Truncate(time.Second), leeway)
		}
	case contract.ReasonIssuedInFuture:
		if c.iat != nil {
			return fmt.Sprintf("iat %s, now %s: issued %s in the future (leeway %s; clock skew?)", at(c.iat.Time), at(now), c.iat.Sub(now).Truncate(time.Second), leeway)
		}
	}
	return ""
}

// issuerDetail names a token's iss against the configured issuers, pointing out the usual
// mistake: the same URL but for a trailing "/" (issuers are compared exactly).
func issuerDetail(iss string, configured []string) string {
	iss = clip(iss)
	d := fmt.Sprintf("iss %q is not a configured issuer %q", iss, configured)
	for _, c := range configured {
		if c != iss && strings.TrimSuffix(c, "/") == strings.TrimSuffix(iss, "/") {
			d += fmt.Sprintf(`: it differs from %q only by a trailing "/" (issuers are compared exactly; set issuer to the token's iss)`, c)
		}
	}
	return d
}

// issuers lists the configured iss values, sorted.
func (v *Verifier) issuers() []string {
	out := make([]string, 0, len(v.byIss))
	for iss := range v.byIss {
		out = append(out, iss)
	}
	sort.Strings(out)
	return out
}

// clip bounds a value taken from a token before it goes into a log line.
func clip(s string) string {
	const limit = 200
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
