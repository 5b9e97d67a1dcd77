package dpop

import (
	"context"
	"time"
)

// SharedReplay records proofs in a store every replica shares (sharedstate.Store is one), so
// a proof used on one replica is refused on every other and after a restart.
type SharedReplay interface {
	// FirstUse records the proof (its key's thumbprint and jti) for as long as it can still
	// be accepted (left), and reports whether this is its first use. An error means the
	// store could not say.
	FirstUse(ctx context.Context, jkt, jti string, left time.Duration) (first bool, err error)
}

// ReasonReplayStoreUnavailable: the shared replay store could not record the proof before
// the deadline (503 with Retry-After; fail closed).
const ReasonReplayStoreUnavailable = "replay_store_unavailable"

// sharedReplay asks the shared store about a proof whose iat is iat (seconds). decided is
// false only when the store failed and local fallback is allowed: the local cache decides.
func (v *Verifier) sharedReplay(ctx context.Context, jkt, jti string, iat float64, now time.Time) (decided bool, err error) {
	left := time.Unix(0, int64(iat*float64(time.Second))).Add(v.window).Sub(now)
	first, err := v.shared.FirstUse(ctx, jkt, jti, left)
	switch {
	case err != nil && v.sharedLocal:
		return false, nil
	case err != nil:
		return true, &Error{Reason: ReasonReplayStoreUnavailable, Description: "try again later", Unavailable: true}
	case !first:
		return true, &Error{Reason: ReasonReplayed, Description: "the DPoP proof was already used"}
	}
	return true, nil
}
