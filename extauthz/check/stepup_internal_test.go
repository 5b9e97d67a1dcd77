package check

import (
	"testing"
	"time"

	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/contract"
)

// BenchmarkStepUpRequirement is what a route's step-up requirement adds to a warm Check that
// meets it: parsing the route contract (acr_values, max_age and the rest), checking the token against
// them, and recording both for the decision log; "none" is the same on a route without them.
// BenchmarkCheck/warm-step-up-interleaved measures the whole Check.
func BenchmarkStepUpRequirement(b *testing.B) {
	now := time.Now()
	id := &token.Identity{ACR: "urn:example:mfa", AuthTime: now.Add(-time.Minute), Leeway: 30 * time.Second}
	for _, tc := range []struct {
		name string
		ext  map[string]string
	}{
		{"none", map[string]string{contract.ExtRoute: "orders-write", contract.ExtScopes: "orders:write"}},
		{"acr_values+max_age", map[string]string{contract.ExtRoute: "orders-write", contract.ExtScopes: "orders:write",
			contract.ExtACRValues: "urn:example:mfa urn:example:hwk", contract.ExtMaxAge: "300"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c, err := contract.Parse(tc.ext)
				if err != nil {
					b.Fatal("invalid")
				}
				r := requirementOf(&c)
				if r.any() {
					rec := r.record(now)
					if u, invalid := r.unmet(id, now); u != 0 || invalid || !rec.Applied {
						b.Fatal("unmet")
					}
				}
			}
		})
	}
}
