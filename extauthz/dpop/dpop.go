// Package dpop is the gate's side of DPoP (RFC 9449): a proof is a JWS the client signs per
// request with the key its access token is bound to (cnf.jkt), naming the request's method and
// URI and the hash of the token. A stolen token is useless without the key, and a copied proof
// is useless on another request, or twice. What a proof says by itself is checked by
// internal/oauth (shared with the demo IdP and the CLI); this package adds what only the gate
// does: the token's hash and key, server nonces (nonce.go), the replay store replicas share
// (shared.go), and refusals as denials.
package dpop

import (
	"context"
	"crypto/subtle"
	"errors"
	"strings"
	"time"

	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/oauth"
)

// Options configure a Verifier.
type Options struct {
	Algorithms    []string      // nil: contract.DPoPAlgorithms
	IATWindow     time.Duration // 0: oauth.DefaultIATWindow
	ReplayEntries int           // 0: oauth.DefaultReplayEntries
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

// Verifier checks proofs at the gate: what a proof says (oauth.ProofChecker), then what it
// must match of the token (ath, jkt), the server nonce, and last the replay caches (so a
// forged proof can't fill them).
type Verifier struct {
	proofs  *oauth.ProofChecker
	algList string // for the challenge: "ES256 EdDSA ..."
	window  time.Duration
	replay  *oauth.ReplayCache
	nonces  *Nonces
	now     func() time.Time

	shared      SharedReplay
	sharedLocal bool
}

// New builds a Verifier; an algorithm that is not asymmetric is an error.
func New(o Options) (*Verifier, error) {
	if o.Algorithms == nil {
		o.Algorithms = contract.DPoPAlgorithms()
	}
	proofs, err := oauth.NewProofChecker(o.Algorithms, o.IATWindow)
	if err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	window := proofs.Window()
	return &Verifier{proofs: proofs, algList: strings.Join(o.Algorithms, " "), window: window,
		replay: oauth.NewReplayCache(o.ReplayEntries, o.ReplayEntriesPerKey, oauth.ReplaySpan(window)), nonces: o.Nonces, now: o.Now,
		shared: o.Shared, sharedLocal: o.SharedFallbackLocal}, nil
}

// Algorithms is the allow-list, space-separated, as the challenge's algs parameter wants it.
func (v *Verifier) Algorithms() string { return v.algList }

// Request is what a proof is checked against.
type Request struct {
	Proof     string // the DPoP header's value
	Method    string // the request's method
	URI       string // the request's URI without query or fragment (htu is compared normalised)
	TokenHash string // oauth.TokenHash of the token presented with the DPoP scheme (callers memoise it per token)
	JKT       string // the token's cnf.jkt
}

// invalid is a proof that fails a check of its own: 401 invalid_dpop_proof.
func invalid(desc string) *denial.Denial {
	return denial.New(denial.InvalidDPoPProof, contract.ReasonInvalidDPoPProof, desc)
}

// Verify checks r's proof; the order is: shape, header (typ, alg, key), signature, claims,
// binding to the token, nonce, and last the replay caches (so a forged proof can't fill
// them). A refusal is a *denial.Denial.
func (v *Verifier) Verify(r Request) error {
	return v.VerifyContext(context.Background(), r)
}

// VerifyContext is Verify bounded by ctx: a shared replay store is asked before its deadline.
func (v *Verifier) VerifyContext(ctx context.Context, r Request) error {
	now := v.now()
	p, err := v.proofs.Check(r.Proof, r.Method, r.URI, now)
	if err != nil {
		return invalid(err.Error())
	}
	if p.ATH == "" || subtle.ConstantTimeCompare([]byte(p.ATH), []byte(r.TokenHash)) != 1 {
		return invalid("the DPoP proof's ath does not match the access token")
	}
	if subtle.ConstantTimeCompare([]byte(p.JKT), []byte(r.JKT)) != 1 {
		return denial.New(denial.InvalidDPoPProof, contract.ReasonDPoPKeyMismatch, "the DPoP proof is not signed with the key the token is bound to")
	}
	if v.nonces != nil && !v.nonces.Valid(p.Nonce, now) {
		// A fresh nonce per answer: the client must retry with it.
		d := denial.New(denial.UseDPoPNonce, contract.ReasonUseDPoPNonce, "a fresh DPoP nonce is required")
		d.Nonce = v.nonces.Current(now)
		return d
	}
	if v.shared != nil {
		if decided, err := v.sharedReplay(ctx, p.JKT, p.JTI, p.IAT, now); decided {
			return err
		}
	}
	switch err := v.replay.Add(p.JKT, p.JTI, now); {
	case errors.Is(err, oauth.ErrProofReplayed):
		return denial.New(denial.InvalidDPoPProof, contract.ReasonDPoPReplayed, err.Error())
	case errors.Is(err, oauth.ErrProofKeyQuota):
		// This key's share of the replay cache is used up until the generation rotates;
		// every other key is unaffected.
		d := denial.New(denial.TooManyRequests, contract.ReasonDPoPKeyQuota, err.Error())
		d.RetryAfter = v.replay.Span()
		return d
	case err != nil:
		return unavailable(contract.ReasonDPoPReplayCacheFull)
	}
	return nil
}

// unavailable is our side's fault (a replay cache that can't record the proof): 503, to be
// retried a second later.
func unavailable(reason contract.Reason) *denial.Denial {
	d := denial.New(denial.Unavailable, reason, "try again later")
	d.RetryAfter = time.Second
	return d
}

// CurrentNonce is the nonce a response may carry (DPoP-Nonce), "" without nonces.
func (v *Verifier) CurrentNonce() string {
	if v.nonces == nil {
		return ""
	}
	return v.nonces.Current(v.now())
}
