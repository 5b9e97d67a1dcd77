package token

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// TestRefusalDetail: a refused token's Detail tells an operator what differs (expected vs
// actual), its Description stays the short fixed text the client gets, and neither holds the
// token.
func TestRefusalDetail(t *testing.T) {
	key := testissuer.NewKey("k1", "RS256")
	is := testissuer.New(key)
	defer is.Close()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	f := newFixture(t, is, func(c *config.Issuer) { c.RequireTyp = "at+jwt" })
	f.v.now = func() time.Time { return now }
	good := func() testissuer.Claims {
		c := is.Standard(aud, "alice", "orders:read", time.Minute)
		c["iat"], c["exp"] = now.Unix(), now.Add(time.Minute).Unix()
		return c
	}
	with := func(edit func(testissuer.Claims)) testissuer.Claims { c := good(); edit(c); return c }
	tests := []struct {
		name, token, reason string
		detail              []string
	}{
		{"wrong audience", testissuer.Sign(key, with(func(c testissuer.Claims) { c["aud"] = "billing-api" }), nil), "wrong_audience",
			[]string{`aud ["billing-api"]`, `want one of ["orders-api"]`}},
		{"trailing slash on iss", testissuer.Sign(key, with(func(c testissuer.Claims) { c["iss"] = is.Issuer + "/" }), nil), "unknown_issuer",
			[]string{`iss "` + is.Issuer + `/"`, `only by a trailing "/"`}},
		{"another issuer", testissuer.Sign(key, with(func(c testissuer.Claims) { c["iss"] = "https://elsewhere" }), nil), "unknown_issuer",
			[]string{`iss "https://elsewhere"`, is.Issuer}},
		{"expired", testissuer.Sign(key, with(func(c testissuer.Claims) { c["exp"] = now.Add(-43 * time.Second).Unix() }), nil), "expired",
			[]string{"exp 2026-11-30T11:59:17Z", "now 2026-11-30T12:00:00Z", "expired 43s ago", "leeway 5s"}},
		{"not yet valid", testissuer.Sign(key, with(func(c testissuer.Claims) { c["nbf"] = now.Add(10 * time.Minute).Unix() }), nil), "not_yet_valid",
			[]string{"nbf 2026-11-30T12:10:00Z", "now 2026-11-30T12:00:00Z", "valid in 10m0s"}},
		{"issued in the future", testissuer.Sign(key, with(func(c testissuer.Claims) { c["iat"] = now.Add(10 * time.Minute).Unix() }), nil), "issued_in_future",
			[]string{"iat 2026-11-30T12:10:00Z", "now 2026-11-30T12:00:00Z"}},
		{"ID token typ", testissuer.Sign(key, good(), map[string]any{"typ": "JWT"}), "wrong_typ",
			[]string{`typ "JWT"`, `want "at+jwt"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.v.Verify(context.Background(), tt.token)
			var te *denial.Denial
			if !errors.As(err, &te) || te.Reason != tt.reason {
				t.Fatalf("err %v, want reason %s", err, tt.reason)
			}
			for _, want := range tt.detail {
				if !strings.Contains(te.Detail, want) || !strings.Contains(te.Error(), want) {
					t.Errorf("detail %q lacks %q", te.Detail, want)
				}
			}
			// The client's description is the fixed short text, and nothing holds the token.
			if strings.Contains(te.Description, "want") || strings.ContainsAny(te.Description, `"`) {
				t.Errorf("description %q carries detail", te.Description)
			}
			sig := tt.token[strings.LastIndex(tt.token, ".")+1:]
			if strings.Contains(te.Error(), sig) || strings.Contains(te.Error(), tt.token[:20]) {
				t.Errorf("error echoes the token: %s", te.Error())
			}
		})
	}
}
