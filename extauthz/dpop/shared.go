package dpop

import (
	"context"
	"time"

	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/oauth"
)

// SharedReplay records proofs in a store every replica shares (sharedstate.Store is one), so
// a proof used on one replica is refused on every other and after a restart.
type SharedReplay interface {
	// FirstUse records the proof (its key's thumbprint and jti) for as long as it can still
	// be accepted (left), and reports whether this is its first use. An error means the
	// store could not say.
	FirstUse(ctx context.Context, jkt, jti string, left time.Duration) (first bool, err error)
}

// sharedReplay asks the shared store about a proof whose iat is iat (seconds). decided is
// false only when the store failed and local fallback is allowed: the local cache decides.
func (v *Verifier) sharedReplay(ctx context.Context, jkt, jti string, iat float64, now time.Time) (decided bool, err error) {
	left := time.Unix(0, int64(iat*float64(time.Second))).Add(v.window).Sub(now)
	first, err := v.shared.FirstUse(ctx, jkt, jti, left)
	switch {
	case err != nil && v.sharedLocal:
		return false, nil
	case err != nil:
		return true, unavailable(contract.ReasonReplayStoreUnavailable) // fail closed
	case !first:
		return true, denial.New(denial.InvalidDPoPProof, contract.ReasonDPoPReplayed, oauth.ErrProofReplayed.Error())
	}
	return true, nil
}
