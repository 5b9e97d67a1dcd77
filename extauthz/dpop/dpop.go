// Package dpop checks DPoP proofs (RFC 9449) at the resource server: the proof is a JWS the
// client signs per request with the key its access token is bound to (cnf.jkt), naming the
// request's method and URI and the hash of the token. A stolen token is useless without the
// key, and a copied proof is useless on another request, or twice.
package dpop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/scopegate/scopegate/internal/contract"
)

// DefaultAlgorithms are the proof algorithms accepted unless configured otherwise.
var DefaultAlgorithms = contract.DPoPAlgorithms()

// allowed are the algorithms that may ever be configured: asymmetric only.
var allowed = []string{"ES256", "ES384", "ES512", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// Allowed reports whether alg may be put on the proof algorithm allow-list.
func Allowed(alg string) bool { return slices.Contains(allowed, alg) }

const (
	// DefaultIATWindow is how far a proof's iat may be from now, either way.
	DefaultIATWindow = 60 * time.Second
	// DefaultReplayEntries bounds the jti replay cache (per generation, see replay.go).
	DefaultReplayEntries = 200_000
	// ReplayKeyShare: by default one proof key may hold a twentieth of a generation (10,000
	// proofs per span, 2 × the iat window, at the default size); a key making more within
	// one span is refused until the next, and the cache fills only when twenty keys do.
	ReplayKeyShare = 20
	// MaxProofBytes is the largest proof accepted: an RSA-4096 jwk and the claims fit well
	// within it.
	MaxProofBytes = 8 << 10
	// MaxJTIBytes bounds a proof's jti (RFC 9449 asks for 96 random bits: a UUID or 22
	// base64url characters; anything this long is not a nonce a client needs).
	MaxJTIBytes = 256
	// MinRSABits and MaxRSABits bound an RSA proof key: below the minimum is too weak, and
	// RSA verification costs more the longer the key, so a client can't make each of its
	// requests arbitrarily expensive. The maximum is go-jose's own (jose.MaxRSAModulusBits, a
	// process-wide setting we leave alone): checked here first, so the refusal says why.
	MinRSABits = 2048
	MaxRSABits = 4096
)

// Options configure a Verifier.
type Options struct {
	Algorithms    []string      // nil: DefaultAlgorithms
	IATWindow     time.Duration // 0: DefaultIATWindow
	ReplayEntries int           // 0: DefaultReplayEntries
	// ReplayEntriesPerKey is one proof key's quota per generation (0: a twentieth of
	// ReplayEntries; at most ReplayEntries).
	ReplayEntriesPerKey int
	// Nonces, when set, makes every proof carry a server nonce (RFC 9449 §8).
	Nonces *Nonces
	Now    func() time.Time // nil: time.Now
	// Shared, when set, records proofs in a store all replicas share instead of the local
	// cache (shared.go); SharedFallbackLocal lets the local cache decide while it fails
	// (otherwise: 503 replay_store_unavailable).
	Shared              SharedReplay
	SharedFallbackLocal bool
}

// Verifier checks proofs.
type Verifier struct {
	algs    []string
	algList string // for the challenge: "ES256 EdDSA ..."
	window  time.Duration
	replay  *replayCache
	nonces  *Nonces
	now     func() time.Time
	keys    keyCache

	shared      SharedReplay
	sharedLocal bool
}

// New builds a Verifier; an algorithm that is not asymmetric is an error.
func New(o Options) (*Verifier, error) {
	if o.Algorithms == nil {
		o.Algorithms = DefaultAlgorithms
	}
	for _, a := range o.Algorithms {
		if !Allowed(a) {
			return nil, fmt.Errorf("DPoP algorithm %q is not allowed: asymmetric JWS algorithms only", a)
		}
	}
	if o.IATWindow <= 0 {
		o.IATWindow = DefaultIATWindow
	}
	if o.ReplayEntries <= 0 {
		o.ReplayEntries = DefaultReplayEntries
	}
	if o.ReplayEntriesPerKey <= 0 {
		o.ReplayEntriesPerKey = max(1, o.ReplayEntries/ReplayKeyShare)
	}
	o.ReplayEntriesPerKey = min(o.ReplayEntriesPerKey, o.ReplayEntries)
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Verifier{algs: o.Algorithms, algList: strings.Join(o.Algorithms, " "), window: o.IATWindow,
		replay: newReplayCache(o.ReplayEntries, o.ReplayEntriesPerKey, ReplaySpan(o.IATWindow)), nonces: o.Nonces, now: o.Now,
		shared: o.Shared, sharedLocal: o.SharedFallbackLocal}, nil
}

// ReplaySpan is how long a generation of the replay cache lasts for an iat window: a proof
// can be accepted for 2 × window (from iat − window to iat + window), and every jti is
// remembered for more than one span, so it outlives its proof. The extra second absorbs
// rounding of fractional iat values.
func ReplaySpan(window time.Duration) time.Duration { return 2*window + time.Second }

// Algorithms is the allow-list, space-separated, as the challenge's algs parameter wants it.
func (v *Verifier) Algorithms() string { return v.algList }

// Request is what a proof is checked against.
type Request struct {
	Proof     string // the DPoP header's value
	Method    string // the request's method
	URI       string // the request's URI without query or fragment (htu is compared normalised)
	TokenHash string // TokenHash of the token presented with the DPoP scheme (callers memoise it per token)
	JKT       string // the token's cnf.jkt
}

// Error is a refused proof. Reason is a fixed label; Description is short and never echoes
// the proof or the token. Nonce is set for use_dpop_nonce: the client must retry with it.
type Error struct {
	Reason      string
	Description string
	Nonce       string
	// Unavailable marks our side's fault (the replay cache is full): 503, not 401.
	Unavailable bool
	// TooMany marks a key that used up its replay-cache quota: 429, RetryAfter later.
	TooMany    bool
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Reason + ": " + e.Description }

// Reasons (metric labels and decision log values).
const (
	ReasonInvalidProof = "invalid_dpop_proof"
	ReasonUseNonce     = "use_dpop_nonce"
	ReasonReplayed     = "dpop_replayed"
	ReasonKeyMismatch  = "dpop_key_mismatch"
	ReasonReplayFull   = "dpop_replay_cache_full"
	ReasonKeyQuota     = "dpop_key_quota"
)

// Reasons are every reason above.
func Reasons() []string {
	return []string{ReasonInvalidProof, ReasonUseNonce, ReasonReplayed, ReasonKeyMismatch, ReasonReplayFull, ReasonKeyQuota}
}

func invalid(desc string) *Error { return &Error{Reason: ReasonInvalidProof, Description: desc} }

var b64 = base64.RawURLEncoding

// proofHeader is the JOSE header of a proof.
type proofHeader struct {
	Typ string          `json:"typ"`
	Alg string          `json:"alg"`
	JWK json.RawMessage `json:"jwk"`
	// Crit names header extensions the verifier must understand (RFC 7515 §4.1.11); a
	// proof verifier understands none, so any crit makes the proof invalid.
	Crit json.RawMessage `json:"crit"`
}

// proofClaims are the claims of a proof; iat is read as a number of any form.
type proofClaims struct {
	JTI   *string      `json:"jti"`
	HTM   *string      `json:"htm"`
	HTU   *string      `json:"htu"`
	IAT   *json.Number `json:"iat"`
	ATH   *string      `json:"ath"`
	Nonce *string      `json:"nonce"`
}

// privateMembers are JWK members that only a private (or symmetric) key has.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// Verify checks r's proof; the order is: shape, header (typ, alg, key), signature, claims,
// binding to the token, nonce, and last the replay cache (so a forged proof can't fill it).
func (v *Verifier) Verify(r Request) error {
	return v.VerifyContext(context.Background(), r)
}

// VerifyContext is Verify bounded by ctx: a shared replay store is asked before its deadline.
func (v *Verifier) VerifyContext(ctx context.Context, r Request) error {
	_, err := v.verify(ctx, r, true)
	return err
}

// KeyOf checks a proof sent to a token endpoint (RFC 9449 §5), where no access token exists
// yet and no ath is expected, and returns the thumbprint of its key: the cnf.jkt the issued
// token is bound to.
func (v *Verifier) KeyOf(proof, method, uri string) (string, error) {
	return v.verify(context.Background(), Request{Proof: proof, Method: method, URI: uri}, false)
}

func (v *Verifier) verify(ctx context.Context, r Request, atResource bool) (string, error) {
	if len(r.Proof) > MaxProofBytes {
		return "", invalid("the DPoP proof is too large")
	}
	dot1 := strings.IndexByte(r.Proof, '.')
	dot2 := strings.LastIndexByte(r.Proof, '.')
	if dot1 < 0 || dot2 == dot1 || strings.IndexByte(r.Proof[dot1+1:dot2], '.') >= 0 {
		return "", invalid("the DPoP proof is not a JWS compact serialization")
	}
	signed, claimsPart, sigPart := r.Proof[:dot2], r.Proof[dot1+1:dot2], r.Proof[dot2+1:]
	var h proofHeader
	if err := decodePart(r.Proof[:dot1], &h); err != nil {
		return "", invalid("the DPoP proof header is not a base64url JSON object")
	}
	if !strings.EqualFold(strings.TrimPrefix(strings.ToLower(h.Typ), "application/"), "dpop+jwt") {
		return "", invalid("the DPoP proof's typ is not dpop+jwt")
	}
	if len(h.Crit) > 0 {
		return "", invalid("the DPoP proof names a critical header extension")
	}
	if !slices.Contains(v.algs, h.Alg) {
		return "", invalid("the DPoP proof's algorithm is not accepted")
	}
	key, jkt, err := v.keys.get(h.JWK, h.Alg)
	if err != nil {
		return "", invalid(err.Error())
	}
	sig, err := b64.DecodeString(sigPart)
	if err != nil {
		return "", invalid("the DPoP proof signature is not base64url")
	}
	method := jwt.GetSigningMethod(h.Alg)
	if method == nil || method.Verify(signed, sig, key) != nil {
		return "", invalid("the DPoP proof signature is invalid")
	}
	var c proofClaims
	if err := decodePart(claimsPart, &c); err != nil {
		return "", invalid("the DPoP proof claims are not a base64url JSON object")
	}
	switch {
	case c.JTI == nil || *c.JTI == "":
		return "", invalid("the DPoP proof has no jti")
	case len(*c.JTI) > MaxJTIBytes:
		return "", invalid("the DPoP proof's jti is too long")
	case c.HTM == nil || *c.HTM != r.Method:
		return "", invalid("the DPoP proof's htm does not match the request method")
	case c.HTU == nil || !SameURI(*c.HTU, r.URI):
		return "", invalid("the DPoP proof's htu does not match the request URI")
	case c.IAT == nil:
		return "", invalid("the DPoP proof has no iat")
	}
	iat, err := c.IAT.Float64()
	if err != nil || math.IsNaN(iat) || math.IsInf(iat, 0) {
		return "", invalid("the DPoP proof's iat is not a number")
	}
	now := v.now()
	// Compared with now to the nanosecond: truncating now to seconds would accept a proof for
	// up to a second longer than its jti is remembered.
	if d := time.Duration(iat*float64(time.Second) - float64(now.UnixNano())); d > v.window || d < -v.window {
		return "", invalid("the DPoP proof's iat is outside the accepted window")
	}
	if atResource {
		if c.ATH == nil || subtle.ConstantTimeCompare([]byte(*c.ATH), []byte(r.TokenHash)) != 1 {
			return "", invalid("the DPoP proof's ath does not match the access token")
		}
	}
	if atResource && subtle.ConstantTimeCompare([]byte(jkt), []byte(r.JKT)) != 1 {
		return "", &Error{Reason: ReasonKeyMismatch, Description: "the DPoP proof is not signed with the key the token is bound to"}
	}
	if v.nonces != nil {
		if c.Nonce == nil || !v.nonces.Valid(*c.Nonce, now) {
			return "", &Error{Reason: ReasonUseNonce, Description: "a fresh DPoP nonce is required", Nonce: v.nonces.Current(now)}
		}
	}
	if v.shared != nil {
		if decided, err := v.sharedReplay(ctx, jkt, *c.JTI, iat, now); decided && err != nil {
			return "", err
		} else if decided {
			return jkt, nil
		}
	}
	switch v.replay.add(jkt, *c.JTI, now) {
	case replaySeen:
		return "", &Error{Reason: ReasonReplayed, Description: "the DPoP proof was already used"}
	case replayKeyFull:
		return "", &Error{Reason: ReasonKeyQuota, Description: "this DPoP key has made too many proofs; try again later", TooMany: true, RetryAfter: v.replay.span}
	case replayFull:
		return "", &Error{Reason: ReasonReplayFull, Description: "try again later", Unavailable: true}
	}
	return jkt, nil
}

// CurrentNonce is the nonce a response may carry (DPoP-Nonce), "" without nonces.
func (v *Verifier) CurrentNonce() string {
	if v.nonces == nil {
		return ""
	}
	return v.nonces.Current(v.now())
}

func decodePart(s string, into any) error {
	b, err := b64.DecodeString(s)
	if err != nil {
		return err
	}
	if len(b) == 0 || b[0] != '{' {
		return errors.New("not a JSON object")
	}
	return json.Unmarshal(b, into)
}

// publicKey parses the proof's jwk: a public key of the algorithm's type, never a private or
// symmetric one. It returns the key and its RFC 7638 thumbprint (base64url SHA-256).
func publicKey(raw json.RawMessage, alg string) (any, string, error) {
	if len(raw) == 0 {
		return nil, "", errors.New("the DPoP proof header has no jwk")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, "", errors.New("the DPoP proof's jwk is not a JSON object")
	}
	for _, m := range privateMembers {
		if _, ok := members[m]; ok {
			return nil, "", errors.New("the DPoP proof's jwk is not a public key")
		}
	}
	if n, ok := members["n"]; ok && rsaModulusBits(n) > MaxRSABits {
		return nil, "", fmt.Errorf("the DPoP proof's RSA key is longer than %d bits", MaxRSABits)
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(raw); err != nil || !k.Valid() || !k.IsPublic() {
		return nil, "", errors.New("the DPoP proof's jwk is not a valid public key")
	}
	if !keyFits(k.Key, alg) {
		return nil, "", errors.New("the DPoP proof's jwk does not fit its algorithm")
	}
	if rk, ok := k.Key.(*rsa.PublicKey); ok && rk.N.BitLen() < MinRSABits {
		return nil, "", fmt.Errorf("the DPoP proof's RSA key is shorter than %d bits", MinRSABits)
	}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, "", errors.New("the DPoP proof's jwk has no thumbprint")
	}
	return k.Key, b64.EncodeToString(tp), nil
}

// rsaModulusBits is the bit length of a JWK's base64url "n" (0 when it is not one).
func rsaModulusBits(raw json.RawMessage) int {
	var n string
	if json.Unmarshal(raw, &n) != nil {
		return 0
	}
	b, err := b64.DecodeString(n)
	if err != nil {
		return 0
	}
	return new(big.Int).SetBytes(b).BitLen()
}

func keyFits(key any, alg string) bool {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	}
	return false
}

// TokenHash is a proof's ath for token: base64url(SHA-256(token)).
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return b64.EncodeToString(sum[:])
}
