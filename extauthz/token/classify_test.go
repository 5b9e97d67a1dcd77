package token

import (
	"errors"
	"fmt"
	"regexp"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// oddError is a validation failure classify does not know, of a type whose name must never
// reach a client.
type oddError struct{}

func (oddError) Error() string { return "odd" }

// goTypeName matches what %T prints for a named type: "*pkg.Name" or "pkg.Name".
var goTypeName = regexp.MustCompile(`\*?[a-z][a-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*`)

// classify decides by jwt's sentinels and our own claims, never by jwt's message text: the
// errors here carry the sentinels under wording jwt has never used.
func TestClassifyUsesSentinelsNotMessages(t *testing.T) {
	claims := func(js string) *accessClaims {
		t.Helper()
		var c accessClaims
		c.names = &claimNames{}
		if err := c.UnmarshalJSON([]byte(js)); err != nil {
			t.Fatal(err)
		}
		return &c
	}
	full := `{"iss":"https://idp","aud":"api","exp":4102444800,"sub":"a"}`
	reworded := func(sentinel error) error { return fmt.Errorf("reworded by a later jwt: %w", sentinel) }
	tests := []struct {
		name   string
		err    error
		claims string
		reason string
	}{
		{"exp missing", reworded(jwt.ErrTokenRequiredClaimMissing), `{"iss":"https://idp","aud":"api"}`, "missing_exp"},
		{"exp and iss missing", errors.Join(reworded(jwt.ErrTokenRequiredClaimMissing), reworded(jwt.ErrTokenRequiredClaimMissing)), `{"aud":"api"}`, "missing_exp"},
		{"iss missing", reworded(jwt.ErrTokenRequiredClaimMissing), `{"aud":"api","exp":4102444800}`, "unknown_issuer"},
		{"aud missing", reworded(jwt.ErrTokenRequiredClaimMissing), `{"iss":"https://idp","exp":4102444800}`, "missing_claim"},
		{"expired", reworded(jwt.ErrTokenExpired), full, "expired"},
		{"not yet valid", reworded(jwt.ErrTokenNotValidYet), full, "not_yet_valid"},
		{"issued in the future", reworded(jwt.ErrTokenUsedBeforeIssued), full, "issued_in_future"},
		{"audience", reworded(jwt.ErrTokenInvalidAudience), full, "wrong_audience"},
		{"issuer", reworded(jwt.ErrTokenInvalidIssuer), full, "unknown_issuer"},
		{"wrong type", reworded(jwt.ErrInvalidType), full, "malformed"},
		{"malformed", reworded(jwt.ErrTokenMalformed), full, "malformed"},
		{"signature", reworded(jwt.ErrTokenSignatureInvalid), full, "bad_signature"},
		{"other claims", reworded(jwt.ErrTokenInvalidClaims), full, "invalid_claims"},
		{"unknown failure", fmt.Errorf("wrapped: %w", oddError{}), full, "invalid_token"},
		{"unknown pointer failure", fmt.Errorf("wrapped: %w", &oddError{}), full, "invalid_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err, claims(tt.claims))
			if got.Reason != tt.reason {
				t.Errorf("reason = %q, want %q", got.Reason, tt.reason)
			}
			// The description goes to the client (body and WWW-Authenticate).
			if m := goTypeName.FindString(got.Description); m != "" {
				t.Errorf("description %q names a Go type (%s)", got.Description, m)
			}
			if got.Description == "" {
				t.Error("empty description")
			}
		})
	}
}
