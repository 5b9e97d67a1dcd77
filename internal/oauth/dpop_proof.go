package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
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

// DPoP proofs (RFC 9449): a JWS the client signs per request with the key its access token
// is bound to (cnf.jkt), naming the request's method and URI (and, at a resource, the hash
// of the token). ProofChecker checks what a proof says by itself; what the proof is checked
// against beyond the request (the token's hash and key, a server nonce, the replay caches)
// is the caller's: extauthz/dpop at the gate, the demo IdP at its token endpoint.

// DPoP defaults and bounds, shared by the gate's config and its verifier.
const (
	// DefaultIATWindow is how far a proof's iat may be from now, either way.
	DefaultIATWindow = 60 * time.Second
	// DefaultReplayEntries bounds the jti replay cache (per generation, see dpop_replay.go).
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

// DefaultReplayEntriesPerKey is one proof key's default quota in a replay cache of entries.
func DefaultReplayEntriesPerKey(entries int) int { return max(1, entries/ReplayKeyShare) }

// ReplaySpan is how long a generation of the replay cache lasts for an iat window: a proof
// can be accepted for 2 × window (from iat − window to iat + window), and every jti is
// remembered for more than one span, so it outlives its proof. The extra second absorbs
// rounding of fractional iat values.
func ReplaySpan(window time.Duration) time.Duration { return 2*window + time.Second }

// ProofChecker checks DPoP proofs against the request they came with. It keeps the proof
// keys it has parsed (a client signs every proof with the same key). Safe for concurrent use.
type ProofChecker struct {
	algs   []string
	window time.Duration
	keys   keyCache
}

// NewProofChecker accepts proofs signed with one of algs (nil: contract.DPoPAlgorithms) whose
// iat is within window of now (0: DefaultIATWindow). An algorithm that is not asymmetric is
// an error.
func NewProofChecker(algs []string, window time.Duration) (*ProofChecker, error) {
	if algs == nil {
		algs = contract.DPoPAlgorithms()
	}
	for _, a := range algs {
		if !Asymmetric(a) {
			return nil, fmt.Errorf("DPoP algorithm %q is not allowed: asymmetric JWS algorithms only", a)
		}
	}
	if window <= 0 {
		window = DefaultIATWindow
	}
	return &ProofChecker{algs: algs, window: window}, nil
}

// Window is the iat window proofs are checked with.
func (c *ProofChecker) Window() time.Duration { return c.window }

// Proof is what a checked proof says beyond its request: the key's thumbprint (the cnf.jkt it
// proves), its jti and iat (seconds), and its ath and nonce ("" when absent).
type Proof struct {
	JKT, JTI   string
	IAT        float64
	ATH, Nonce string
}

// Check verifies proof for a request with method and uri at now: shape, header (typ, alg,
// key), signature, then claims (jti, htm, htu, iat). An error's text is a short description
// fit for a client: it never echoes the proof.
func (c *ProofChecker) Check(proof, method, uri string, now time.Time) (Proof, error) {
	if len(proof) > MaxProofBytes {
		return Proof{}, errors.New("the DPoP proof is too large")
	}
	dot1 := strings.IndexByte(proof, '.')
	dot2 := strings.LastIndexByte(proof, '.')
	if dot1 < 0 || dot2 == dot1 || strings.IndexByte(proof[dot1+1:dot2], '.') >= 0 {
		return Proof{}, errors.New("the DPoP proof is not a JWS compact serialization")
	}
	signed, claimsPart, sigPart := proof[:dot2], proof[dot1+1:dot2], proof[dot2+1:]
	var h proofHeader
	if err := decodeObject(proof[:dot1], &h); err != nil {
		return Proof{}, errors.New("the DPoP proof header is not a base64url JSON object")
	}
	if !strings.EqualFold(strings.TrimPrefix(strings.ToLower(h.Typ), "application/"), "dpop+jwt") {
		return Proof{}, errors.New("the DPoP proof's typ is not dpop+jwt")
	}
	if len(h.Crit) > 0 {
		return Proof{}, errors.New("the DPoP proof names a critical header extension")
	}
	if !slices.Contains(c.algs, h.Alg) {
		return Proof{}, errors.New("the DPoP proof's algorithm is not accepted")
	}
	key, jkt, err := c.keys.get(h.JWK, h.Alg)
	if err != nil {
		return Proof{}, err
	}
	sig, err := b64.DecodeString(sigPart)
	if err != nil {
		return Proof{}, errors.New("the DPoP proof signature is not base64url")
	}
	m := jwt.GetSigningMethod(h.Alg)
	if m == nil || m.Verify(signed, sig, key) != nil {
		return Proof{}, errors.New("the DPoP proof signature is invalid")
	}
	var cl proofClaims
	if err := decodeObject(claimsPart, &cl); err != nil {
		return Proof{}, errors.New("the DPoP proof claims are not a base64url JSON object")
	}
	switch {
	case cl.JTI == nil || *cl.JTI == "":
		return Proof{}, errors.New("the DPoP proof has no jti")
	case len(*cl.JTI) > MaxJTIBytes:
		return Proof{}, errors.New("the DPoP proof's jti is too long")
	case cl.HTM == nil || *cl.HTM != method:
		return Proof{}, errors.New("the DPoP proof's htm does not match the request method")
	case cl.HTU == nil || !SameURI(*cl.HTU, uri):
		return Proof{}, errors.New("the DPoP proof's htu does not match the request URI")
	case cl.IAT == nil:
		return Proof{}, errors.New("the DPoP proof has no iat")
	}
	iat, err := cl.IAT.Float64()
	if err != nil || math.IsNaN(iat) || math.IsInf(iat, 0) {
		return Proof{}, errors.New("the DPoP proof's iat is not a number")
	}
	// Compared with now to the nanosecond: truncating now to seconds would accept a proof for
	// up to a second longer than its jti is remembered.
	if d := time.Duration(iat*float64(time.Second) - float64(now.UnixNano())); d > c.window || d < -c.window {
		return Proof{}, errors.New("the DPoP proof's iat is outside the accepted window")
	}
	p := Proof{JKT: jkt, JTI: *cl.JTI, IAT: iat}
	if cl.ATH != nil {
		p.ATH = *cl.ATH
	}
	if cl.Nonce != nil {
		p.Nonce = *cl.Nonce
	}
	return p, nil
}

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

func decodeObject(s string, into any) error {
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
