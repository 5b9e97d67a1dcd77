// Package introspect asks an issuer's RFC 7662 token introspection endpoint about an opaque
// access token. It only talks to the endpoint and parses the answer; deciding whether the
// answer is good enough (active, exp, iss, aud, token_type) is the token package's job, as
// it is for a JWT's claims.
//
// The token is sent in the request body only. It never appears in an error, a log line or a
// metric label: errors name the endpoint and what failed.
package introspect

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/scopegate/scopegate/internal/backoff"
	"github.com/scopegate/scopegate/internal/oauth"
)

// MaxResponseBytes bounds an introspection response: the answer about one token is small,
// and a huge body is the IdP misbehaving, not a token to read.
const MaxResponseBytes = 64 << 10

// ErrUnavailable wraps every failure that is the IdP's or the network's, not the token's:
// no endpoint yet, a transport error or timeout, a non-200 status, a body that is too large
// or not an introspection response.
var ErrUnavailable = errors.New("token introspection is unavailable")

// Options configure a Client.
type Options struct {
	Name   string // the issuer's configured name (logs, metric label)
	Issuer string // the exact issuer identifier, for discovery
	// Endpoint is the introspection endpoint; empty with Discovery reads introspection_endpoint
	// from {Issuer}/.well-known/openid-configuration.
	Endpoint     string
	Discovery    bool
	ClientID     string
	ClientSecret string // client_secret_basic; or
	// ClientKey authenticates with private_key_jwt (RFC 7523 §2.2): a fresh client assertion
	// signed with it for every call. KeyID names it in the assertion's kid (optional).
	ClientKey crypto.Signer
	KeyID     string
	// HTTP is the client for calls; nil: a client bounded by Timeout.
	HTTP *http.Client
	// JWTResponse asks for a signed JWT response (RFC 9701) and refuses a plain JSON one; the
	// caller verifies the JWT (Response.JWT) with the issuer's keys.
	JWTResponse bool
	// Timeout bounds one call (and one discovery attempt).
	Timeout time.Duration
	// MaxConcurrent bounds the calls in flight (0: DefaultMaxConcurrent); see TryAcquire.
	MaxConcurrent int
	Metrics       *Metrics
	Logger        *slog.Logger
	RetryMin      time.Duration // discovery retry back-off (default 1s, doubling to RetryMax)
	RetryMax      time.Duration // default 1m
	// Shared, when set, shares answers with the other replicas (shared.go) for CacheTTL
	// (positive, never past exp) and NegativeCacheTTL (inactive).
	Shared                     Shared
	CacheTTL, NegativeCacheTTL time.Duration
}

// DefaultMaxConcurrent is the calls one issuer's endpoint gets at once by default: sized for
// one IdP, so a flood of junk tokens can't open thousands of requests to it.
const DefaultMaxConcurrent = 64

// Client calls one issuer's introspection endpoint.
type Client struct {
	o        Options
	endpoint atomic.Pointer[string]
	auth     string // the Authorization header value (client_secret_basic)
	metrics  *IssuerMetrics
	post     *http.Client  // o.HTTP, but never following a redirect
	slots    chan struct{} // a token per call in flight
}

// New returns a client. With a static endpoint it is ready at once; with discovery, Start
// finds the endpoint.
func New(o Options) (*Client, error) {
	if o.Endpoint == "" && !o.Discovery {
		return nil, fmt.Errorf("introspection %s: an endpoint or discovery is required", o.Name)
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: o.Timeout}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = time.Minute
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = DefaultMaxConcurrent
	}
	c := &Client{o: o, metrics: o.Metrics.For(o.Name), post: noRedirects(o.HTTP), slots: make(chan struct{}, o.MaxConcurrent)}
	// RFC 6749 §2.3.1: client_secret_basic form-encodes both parts before base64.
	req, _ := http.NewRequest(http.MethodPost, "http://x", nil)
	req.SetBasicAuth(url.QueryEscape(o.ClientID), url.QueryEscape(o.ClientSecret))
	c.auth = req.Header.Get("Authorization")
	if o.Endpoint != "" {
		ep := o.Endpoint
		c.endpoint.Store(&ep)
	}
	return c, nil
}

// noRedirects is hc that answers a redirect with the redirect itself (a non-200 status, so
// ErrUnavailable): following one would POST the token, and the client secret or assertion,
// to wherever the Location header points.
func noRedirects(hc *http.Client) *http.Client {
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// TryAcquire takes one of MaxConcurrent call slots without waiting; false means every slot
// is busy and the caller must not call (it answers 503 at once instead). Release returns it.
func (c *Client) TryAcquire() bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
		c.metrics.rejected()
		return false
	}
}

// Release returns a slot taken by TryAcquire.
func (c *Client) Release() { <-c.slots }

// Metrics are this issuer's counters, pre-bound so the Check path does no label lookups.
func (c *Client) Metrics() *IssuerMetrics { return c.metrics }

// Name is the issuer's configured name.
func (c *Client) Name() string { return c.o.Name }

// Ready reports whether the endpoint is known.
func (c *Client) Ready() bool { return c.endpoint.Load() != nil }

// Endpoint is the endpoint in use, "" until discovered.
func (c *Client) Endpoint() string {
	if p := c.endpoint.Load(); p != nil {
		return *p
	}
	return ""
}

// Start discovers the endpoint in the background (retrying with back-off) when the client
// was configured with discovery; it returns at once.
func (c *Client) Start(ctx context.Context) {
	if c.Ready() {
		return
	}
	var report backoff.Reporter // a permanent failure (the IdP names another issuer) is said once
	go backoff.Retry(ctx, c.o.RetryMin, c.o.RetryMax, func() error {
		ep, err := c.discover(ctx)
		if err == nil {
			c.endpoint.Store(&ep)
			c.o.Logger.Info("introspection endpoint discovered", "issuer", c.o.Name, "endpoint", ep)
		}
		return err
	}, func(err error, wait time.Duration) {
		c.o.Logger.Log(ctx, report.Level(err), "introspection discovery failed; will retry", "issuer", c.o.Name, "error", err, "retry_in", wait.String())
	})
}

// Discover finds the endpoint now, once (for one-shot tools); a no-op when it is known.
func (c *Client) Discover(ctx context.Context) error {
	if c.Ready() {
		return nil
	}
	ep, err := c.discover(ctx)
	if err != nil {
		return err
	}
	c.endpoint.Store(&ep)
	return nil
}

func (c *Client) discover(ctx context.Context) (string, error) {
	doc, u, err := oauth.FetchDiscovery(ctx, c.o.HTTP, c.o.Issuer, c.o.Timeout)
	if err != nil {
		return "", err
	}
	if !oauth.HTTPURL(doc.IntrospectionEndpoint) {
		return "", fmt.Errorf("discovery %s: introspection_endpoint %q is not an http(s) URL", u, doc.IntrospectionEndpoint)
	}
	return doc.IntrospectionEndpoint, nil
}

// Introspect asks the endpoint about token (with Shared, another replica's answer stands in:
// shared.go). ctx bounds the call (together with Timeout). Every error wraps ErrUnavailable;
// an inactive token is a Response, not an error.
func (c *Client) Introspect(ctx context.Context, token string) (*Response, error) {
	return c.IntrospectAfter(ctx, token, notRead)
}

// ask calls the IdP.
func (c *Client) ask(ctx context.Context, token string) (*Response, error) {
	ep := c.Endpoint()
	if ep == "" {
		c.metrics.failure()
		return nil, fmt.Errorf("%w: introspection endpoint of %s not discovered yet", ErrUnavailable, c.o.Name)
	}
	start := time.Now()
	r, err := c.call(ctx, ep, token)
	c.metrics.observe(time.Since(start), r, err)
	return r, err
}

func (c *Client) call(ctx context.Context, ep, token string) (*Response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	if c.o.ClientKey != nil {
		assertion, err := c.assertion(ep)
		if err != nil {
			return nil, fmt.Errorf("%w: client assertion: %v", ErrUnavailable, err)
		}
		form.Set("client_id", c.o.ClientID)
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", assertion)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, ep, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if c.o.JWTResponse {
		req.Header.Set("Accept", JWTMediaType)
	}
	if c.o.ClientKey == nil {
		req.Header.Set("Authorization", c.auth)
	}
	resp, err := c.post.Do(req)
	if err != nil {
		// *url.Error names the method and URL only; the token is in the body, never in it.
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxResponseBytes))
		return nil, fmt.Errorf("%w: %s answered status %d", ErrUnavailable, ep, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: reading the response: %v", ErrUnavailable, ep, err)
	}
	if len(body) > MaxResponseBytes {
		return nil, fmt.Errorf("%w: %s: response larger than %d bytes", ErrUnavailable, ep, MaxResponseBytes)
	}
	if c.o.JWTResponse {
		// RFC 9701 §5: the answer is a JWS; a plain JSON answer would be unsigned: refused.
		if mt := strings.TrimSpace(strings.Split(resp.Header.Get("Content-Type"), ";")[0]); !strings.EqualFold(mt, JWTMediaType) {
			return nil, fmt.Errorf("%w: %s: a signed (%s) response was asked for, got %q", ErrUnavailable, ep, JWTMediaType, mt)
		}
		return &Response{JWT: strings.TrimSpace(string(body))}, nil
	}
	r, err := Parse(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, ep, err)
	}
	return r, nil
}

// JWTMediaType is the media type of an RFC 9701 JWT introspection response.
const JWTMediaType = "application/token-introspection+jwt"

// Response is an introspection answer with the members scopegate reads, type-checked.
// Optional numeric members are 0 when absent.
type Response struct {
	Active    bool
	Scope     string
	ClientID  string
	Sub       string
	Iss       string
	JTI       string
	TokenType string
	// TokenUse is a token_use member (Amazon Cognito's name for the token's kind).
	TokenUse string
	Aud      []string
	Exp      int64
	Iat      int64
	Nbf      int64
	// JKT and X5T are the cnf member's DPoP key thumbprint (RFC 9449 §6.2) and certificate
	// thumbprint (RFC 8705 §3.2): the token is sender-constrained.
	JKT, X5T string
	// UnsupportedCnf is set when cnf holds a member other than those, or neither: the token
	// is sender-constrained in a way scopegate can't check, and must be refused.
	UnsupportedCnf bool
	// ACR, AMR and AuthTime are the user's authentication (acr and auth_time are registered
	// introspection members, RFC 9470 §6.2; amr is read by the same rule as in a JWT).
	ACR      string
	AMR      []string
	AuthTime int64
	// Raw is the whole response, the token's claims for the policy (input.token.claims).
	Raw []byte
	// JWT is set, and nothing else, for an RFC 9701 response: the signed JWT, still to be
	// verified; its token_introspection claim is the answer (Parse it).
	JWT string
	// Age is how long ago the IdP gave this answer: 0 from the IdP, more for an answer
	// another replica shared. A cache counts its lifetime from then.
	Age time.Duration
}

// Parse reads a response body strictly: a JSON object with a boolean active, string members
// that are strings, numeric times that are numbers, aud a string or an array of strings. A
// member named twice is refused (two readers could disagree about it).
func Parse(body []byte) (*Response, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, errors.New("the response is not a JSON object")
	}
	if err := noDuplicates(body); err != nil {
		return nil, err
	}
	r := &Response{Raw: bytes.Clone(body)}
	act, ok := m["active"]
	if !ok {
		return nil, errors.New("the response has no active member")
	}
	if err := json.Unmarshal(act, &r.Active); err != nil || !isBool(act) {
		return nil, errors.New("active is not a boolean")
	}
	if !r.Active {
		return r, nil // RFC 7662 §2.2: nothing else of an inactive answer is meaningful
	}
	for name, dst := range map[string]*string{"scope": &r.Scope, "client_id": &r.ClientID, "sub": &r.Sub,
		"iss": &r.Iss, "jti": &r.JTI, "token_type": &r.TokenType, "token_use": &r.TokenUse, "acr": &r.ACR} {
		if raw, ok := m[name]; ok && !isNull(raw) {
			if err := json.Unmarshal(raw, dst); err != nil {
				return nil, fmt.Errorf("%s is not a string", name)
			}
		}
	}
	for name, dst := range map[string]*int64{"exp": &r.Exp, "iat": &r.Iat, "nbf": &r.Nbf, "auth_time": &r.AuthTime} {
		if raw, ok := m[name]; ok && !isNull(raw) {
			var f float64
			if err := json.Unmarshal(raw, &f); err != nil {
				return nil, fmt.Errorf("%s is not a number", name)
			}
			*dst = int64(f)
		}
	}
	if raw, ok := m["cnf"]; ok && !isNull(raw) {
		var cnf map[string]json.RawMessage
		if err := json.Unmarshal(raw, &cnf); err != nil || cnf == nil {
			return nil, errors.New("cnf is not an object")
		}
		for name, v := range cnf {
			var dst *string
			switch name {
			case "jkt":
				dst = &r.JKT
			case "x5t#S256":
				dst = &r.X5T
			default:
				// A method we can't check (jwk, kid, x5t#s256 in another case, ...): the token
				// is bound to something we could not verify, so it is refused (not our
				// provider's fault: a well-formed answer about a token we won't take).
				r.UnsupportedCnf = true
				continue
			}
			if err := json.Unmarshal(v, dst); err != nil || *dst == "" {
				return nil, fmt.Errorf("cnf.%s is not a thumbprint string", name)
			}
		}
		if r.JKT == "" && r.X5T == "" {
			r.UnsupportedCnf = true
		}
	}
	if raw, ok := m["amr"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &r.AMR); err != nil {
			return nil, errors.New("amr is not an array of strings")
		}
	}
	if raw, ok := m["aud"]; ok && !isNull(raw) {
		var one string
		if json.Unmarshal(raw, &one) == nil {
			r.Aud = []string{one}
		} else if err := json.Unmarshal(raw, &r.Aud); err != nil {
			return nil, errors.New("aud is neither a string nor an array of strings")
		}
	}
	return r, nil
}

func isBool(raw json.RawMessage) bool {
	s := string(bytes.TrimSpace(raw))
	return s == "true" || s == "false"
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// noDuplicates refuses a top-level member named twice.
func noDuplicates(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil { // {
		return err
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		k, _ := t.(string)
		if seen[k] {
			return fmt.Errorf("the response names %q twice", k)
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	return nil
}

// assertion is a private_key_jwt client assertion (RFC 7523 §3): iss and sub the client, aud
// the endpoint, a minute's life, a random jti so it can't be replayed.
func (c *Client) assertion(endpoint string) (string, error) {
	method, err := SigningMethodFor(c.o.ClientKey)
	if err != nil {
		return "", err
	}
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	now := time.Now()
	t := jwt.NewWithClaims(method, jwt.RegisteredClaims{
		Issuer: c.o.ClientID, Subject: c.o.ClientID, Audience: jwt.ClaimStrings{endpoint},
		ID: base64.RawURLEncoding.EncodeToString(jti[:]), IssuedAt: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)),
	})
	if c.o.KeyID != "" {
		t.Header["kid"] = c.o.KeyID
	}
	return t.SignedString(c.o.ClientKey)
}

// SigningMethodFor picks the assertion's algorithm from the key: RS256, ES256/384/512 by
// curve, or EdDSA.
func SigningMethodFor(k crypto.Signer) (jwt.SigningMethod, error) {
	switch key := k.(type) {
	case *rsa.PrivateKey:
		return jwt.SigningMethodRS256, nil
	case *ecdsa.PrivateKey:
		switch key.Curve.Params().BitSize {
		case 256:
			return jwt.SigningMethodES256, nil
		case 384:
			return jwt.SigningMethodES384, nil
		case 521:
			return jwt.SigningMethodES512, nil
		}
	case ed25519.PrivateKey:
		return jwt.SigningMethodEdDSA, nil
	}
	return nil, errors.New("unsupported client key (want RSA, ECDSA P-256/384/521 or Ed25519)")
}
