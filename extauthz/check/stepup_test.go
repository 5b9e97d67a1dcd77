package check_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/extauthz/decisionlog"
	"github.com/scopegate/scopegate/extauthz/dpop"
	"github.com/scopegate/scopegate/internal/checkreq"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/oauth"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
	"github.com/scopegate/scopegate/oauthclient"
)

// stepUpPolicy asks for a second factor (acr urn:mfa, signed in within 10 minutes) on a
// request whose x-amount header is above 1000, as the policies/README.md example does.
const stepUpPolicy = `package scopegate.authz

decision := {"allow": true} if {
	not needs_second_factor
} else := {"allow": false, "status": 401, "reason": "insufficient_user_authentication", "acr_values": ["urn:mfa"], "max_age": 600}

needs_second_factor if {
	to_number(input.request.headers["x-amount"]) > 1000
	input.token.acr != "urn:mfa"
}
`

// seen is a CheckResponse as the client sees it.
type seen struct {
	status     int
	challenges []oauthclient.Challenge
	body       string
}

func seenOf(t *testing.T, resp *authv3.CheckResponse) seen {
	t.Helper()
	resp, err := check.Decoded(resp)
	if err != nil {
		t.Fatal(err)
	}
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		return seen{status: 200}
	}
	d := resp.GetDeniedResponse()
	a := seen{status: int(d.GetStatus().GetCode()), body: d.GetBody()}
	var values []string
	for _, h := range d.GetHeaders() {
		if h.GetHeader().GetKey() == "www-authenticate" {
			values = append(values, h.GetHeader().GetValue())
		}
	}
	if len(values) > 0 {
		if a.challenges, err = oauthclient.ParseChallenges(strings.Join(values, ", ")); err != nil {
			t.Fatalf("the challenge does not parse: %v", err)
		}
	}
	return a
}

func (a seen) challenge(scheme string) map[string]string {
	for _, c := range a.challenges {
		if c.Scheme == scheme {
			return c.Params
		}
	}
	return nil
}

// TestStepUp: a route's acr_values and max_age (RFC 9470) against the token's acr and
// auth_time, with the issuer's leeway (30s here) on auth_time; a policy's own step-up; the
// challenge in the scheme the client used; the order with scopes; shadow mode; a route whose
// requirements can't be read.
func TestStepUp(t *testing.T) {
	k := testissuer.NewKey("k1", "ES256")
	now := time.Now().Truncate(time.Second)
	proofs, err := dpop.New(dpop.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	dlog := decisionlog.New(&logs, 1, 0)
	clock := func(o *check.Options) { o.Now = func() time.Time { return now }; o.DPoP = proofs; o.DecisionLog = dlog }
	r := newRig(t, []*testissuer.Key{k}, "default-policy", 1000, clock)
	// Two more services on the same verifier: no policy, and a policy that asks for step-up.
	tokenOnly := check.New(check.Options{Verifier: r.verifier, Headers: r.headers, Now: func() time.Time { return now }, DPoP: proofs, DecisionLog: dlog})
	policyStepUp := check.New(check.Options{Verifier: r.verifier, Headers: r.headers, Now: func() time.Time { return now }, DPoP: proofs, DecisionLog: dlog,
		Policy: policyEngine(t, stepUpPolicy)})

	holder := ecKey(t)
	jkt, err := oauth.Thumbprint(holder)
	if err != nil {
		t.Fatal(err)
	}
	// tok is alice's token with the given scope, acr ("" for none) and auth_time (relative
	// to now; nil for none), bound to holder's key with dpop.
	tok := func(scope, acr string, authAgo *time.Duration, bound bool) string {
		c := r.is.Standard("orders-api", "alice", scope, time.Hour)
		if acr != "" {
			c["acr"] = acr
			c["amr"] = []string{"pwd"}
		}
		if authAgo != nil {
			c["auth_time"] = now.Add(-*authAgo).Unix()
		}
		if bound {
			c["cnf"] = map[string]any{"jkt": jkt}
		}
		return testissuer.Sign(k, c, nil)
	}
	ago := func(d time.Duration) *time.Duration { return &d }
	route := func(extra map[string]string) map[string]string {
		ext := map[string]string{contract.ExtRoute: "refunds", contract.ExtScopes: "orders:write", contract.ExtResourceMetadata: metadataURL}
		for k, v := range extra {
			ext[k] = v
		}
		return ext
	}
	acrRoute := route(map[string]string{contract.ExtACRValues: "urn:mfa urn:hwk"})
	ageRoute := route(map[string]string{contract.ExtMaxAge: "300"})
	bothRoute := route(map[string]string{contract.ExtACRValues: "urn:mfa urn:hwk", contract.ExtMaxAge: "300"})
	const rw = "orders:read orders:write"
	req := func(ext map[string]string, authorization string, headers ...string) *authv3.CheckRequest {
		rq := checkreq.Request{Method: "POST", Path: "/refunds", Host: "api.example.com", ContextExtensions: ext}
		rq.Add("authorization", authorization)
		for i := 0; i+1 < len(headers); i += 2 {
			rq.Add(headers[i], headers[i+1])
		}
		return rq.MustBuild()
	}
	bearer := func(t string) string { return "Bearer " + t }
	dpopReq := func(ext map[string]string, tok string) *authv3.CheckRequest {
		p, err := oauth.SignProof(holder, "ES256", oauth.ProofClaims{Method: "POST", URI: "https://api.example.com/refunds", AccessToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		return req(ext, "DPoP "+tok, "dpop", p)
	}
	const (
		stronger = "a stronger authentication is required"
		recent   = "a more recent authentication is required"
		both     = "a stronger and more recent authentication is required"
	)

	tests := []struct {
		name   string
		svc    *check.Service
		req    *authv3.CheckRequest
		status int
		scheme string            // the challenge carrying the error
		params map[string]string // its parameters that must be so ("" : absent)
	}{
		{"acr missing", r.svc, req(acrRoute, bearer(tok(rw, "", nil, false))), 401, "Bearer",
			map[string]string{"error": "insufficient_user_authentication", "error_description": stronger, "acr_values": "urn:mfa urn:hwk", "max_age": "", "resource_metadata": metadataURL}},
		{"acr not in the list", r.svc, req(acrRoute, bearer(tok(rw, "urn:pwd", nil, false))), 401, "Bearer",
			map[string]string{"error": "insufficient_user_authentication", "acr_values": "urn:mfa urn:hwk"}},
		{"acr in another case", r.svc, req(acrRoute, bearer(tok(rw, "URN:MFA", nil, false))), 401, "Bearer",
			map[string]string{"error": "insufficient_user_authentication"}},
		{"acr in the list", r.svc, req(acrRoute, bearer(tok(rw, "urn:hwk", nil, false))), 200, "", nil},
		{"auth_time missing", r.svc, req(ageRoute, bearer(tok(rw, "urn:pwd", nil, false))), 401, "Bearer",
			map[string]string{"error": "insufficient_user_authentication", "error_description": recent, "max_age": "300", "acr_values": ""}},
		{"auth_time too old", r.svc, req(ageRoute, bearer(tok(rw, "", ago(time.Hour), false))), 401, "Bearer",
			map[string]string{"error": "insufficient_user_authentication", "max_age": "300"}},
		{"auth_time fresh", r.svc, req(ageRoute, bearer(tok(rw, "", ago(10*time.Second), false))), 200, "", nil},
		{"auth_time at max_age plus leeway", r.svc, req(ageRoute, bearer(tok(rw, "", ago(330*time.Second), false))), 200, "", nil},
		{"auth_time a second past max_age plus leeway", r.svc, req(ageRoute, bearer(tok(rw, "", ago(331*time.Second), false))), 401, "Bearer",
			map[string]string{"max_age": "300"}},
		{"auth_time in the future within leeway", r.svc, req(ageRoute, bearer(tok(rw, "", ago(-30*time.Second), false))), 200, "", nil},
		{"auth_time in the future past leeway", r.svc, req(ageRoute, bearer(tok(rw, "", ago(-31*time.Second), false))), 401, "Bearer",
			map[string]string{"error_description": recent}},
		{"both required, both met", r.svc, req(bothRoute, bearer(tok(rw, "urn:mfa", ago(time.Minute), false))), 200, "", nil},
		{"both required, too old", r.svc, req(bothRoute, bearer(tok(rw, "urn:mfa", ago(time.Hour), false))), 401, "Bearer",
			map[string]string{"error_description": recent, "acr_values": "urn:mfa urn:hwk", "max_age": "300"}},
		{"both required, acr not in the list", r.svc, req(bothRoute, bearer(tok(rw, "urn:pwd", ago(time.Minute), false))), 401, "Bearer",
			map[string]string{"error_description": stronger, "acr_values": "urn:mfa urn:hwk", "max_age": "300"}},
		{"both required, both failing", r.svc, req(bothRoute, bearer(tok(rw, "", nil, false))), 401, "Bearer",
			map[string]string{"error_description": both}},
		// The error goes in the challenge of the scheme the client used (RFC 9449 §7.1).
		{"DPoP scheme challenge", r.svc, dpopReq(bothRoute, tok(rw, "urn:pwd", ago(time.Minute), true)), 401, "DPoP",
			map[string]string{"error": "insufficient_user_authentication", "acr_values": "urn:mfa urn:hwk", "max_age": "300", "algs": "ES256 EdDSA RS256 PS256", "resource_metadata": metadataURL}},
		{"DPoP scheme, met", r.svc, dpopReq(bothRoute, tok(rw, "urn:mfa", ago(time.Minute), true)), 200, "", nil},
		// Scopes first: a token that lacks a scope is told so, not sent to step up for nothing.
		{"missing scope wins over step-up", r.svc, req(acrRoute, bearer(tok("orders:read", "urn:pwd", nil, false))), 403, "Bearer",
			map[string]string{"error": "insufficient_scope", "scope": "orders:write", "acr_values": ""}},
		// The route's requirement holds without a policy too.
		{"token-only gate", tokenOnly, req(acrRoute, bearer(tok(rw, "urn:pwd", nil, false))), 401, "Bearer",
			map[string]string{"error": "insufficient_user_authentication"}},
		// Shadow mode lets a step-up failure through, like a policy denial.
		{"shadow route", r.svc, req(route(map[string]string{contract.ExtACRValues: "urn:mfa", contract.ExtMode: contract.ModeShadow}), bearer(tok(rw, "urn:pwd", nil, false))), 200, "", nil},
		// A policy asks for step-up itself.
		{"step-up asked by a Rego rule", policyStepUp, req(route(nil), bearer(tok(rw, "urn:pwd", ago(time.Minute), false)), "x-amount", "5000"), 401, "Bearer",
			map[string]string{"error": "insufficient_user_authentication", "error_description": "the request needs a stronger or more recent authentication", "acr_values": "urn:mfa", "max_age": "600", "resource_metadata": metadataURL}},
		{"step-up by a Rego rule, DPoP scheme", policyStepUp, dpopReq(route(nil), tok(rw, "urn:pwd", nil, true)), 200, "", nil},
		{"step-up rule, small amount", policyStepUp, req(route(nil), bearer(tok(rw, "urn:pwd", nil, false)), "x-amount", "10"), 200, "", nil},
		{"step-up rule, second factor", policyStepUp, req(route(nil), bearer(tok(rw, "urn:mfa", nil, false)), "x-amount", "5000"), 200, "", nil},
		// Requirements authz can't read refuse the route, whatever the token.
		{"invalid max_age", r.svc, req(route(map[string]string{contract.ExtMaxAge: "5m"}), bearer(tok(rw, "urn:mfa", ago(time.Second), false))), 500, "", nil},
		{"invalid acr_values", r.svc, req(route(map[string]string{contract.ExtACRValues: `urn:mfa "x"`}), bearer(tok(rw, "urn:pwd", nil, false))), 500, "", nil},
		{"invalid acr_values, never written: 500", r.svc, req(route(map[string]string{contract.ExtACRValues: "urn:mfa\r\nx-evil: 1"}), bearer(tok(rw, "", nil, false))), 500, "", nil},
		// A token meets such a list only by naming one of its values exactly.
		{"invalid acr_values, an exact value", r.svc, req(route(map[string]string{contract.ExtACRValues: `urn:mfa "x"`}), bearer(tok(rw, "urn:mfa", nil, false))), 200, "", nil},
		{"empty acr_values", r.svc, req(route(map[string]string{contract.ExtACRValues: ""}), bearer(tok(rw, "urn:mfa", nil, false))), 500, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.svc.Check(context.Background(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			a := seenOf(t, resp)
			if a.status != tt.status {
				t.Fatalf("status %d, want %d (%+v)", a.status, tt.status, a)
			}
			if tt.scheme == "" {
				return
			}
			p := a.challenge(tt.scheme)
			if p == nil {
				t.Fatalf("no %s challenge in %+v", tt.scheme, a.challenges)
			}
			for name, want := range tt.params {
				if got, ok := p[name]; got != want || (want == "" && ok) {
					t.Errorf("%s %s=%q, want %q (all: %v)", tt.scheme, name, got, want, p)
				}
			}
			if tt.status == 401 {
				// The other scheme's challenge is bare: the error is in one challenge only.
				other := map[string]string{"Bearer": "DPoP", "DPoP": "Bearer"}[tt.scheme]
				if o := a.challenge(other); o == nil || o["error"] != "" || o["acr_values"] != "" || o["max_age"] != "" {
					t.Errorf("%s challenge %v: want it present and bare", other, o)
				}
				var body struct{ Error string }
				if json.Unmarshal([]byte(a.body), &body) != nil || body.Error != "insufficient_user_authentication" {
					t.Errorf("body %s", a.body)
				}
			}
		})
	}

	// The decision log says what was required and what the token had; never the token.
	if err := dlog.Close(); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l struct {
			Route, Reason, Detail string
			Allow, Shadow         bool
			StepUp                *struct {
				ACRValues string `json:"acr_values"`
				MaxAge    *int64 `json:"max_age"`
				ACR       string `json:"acr"`
				AuthTime  string `json:"auth_time"`
				AuthAge   *int64 `json:"auth_age_s"`
			} `json:"step_up"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if l.Reason == contract.ReasonInsufficientUserAuthentication && l.StepUp == nil {
			t.Errorf("a step-up denial without step_up: %s", line)
		}
		if !l.Allow && l.StepUp != nil && l.StepUp.ACR == "urn:mfa" && l.StepUp.AuthAge != nil && *l.StepUp.AuthAge == 3600 {
			// "both required, too old"
			found = true
			if l.StepUp.ACRValues != "urn:mfa urn:hwk" || *l.StepUp.MaxAge != 300 || l.StepUp.AuthTime != now.Add(-time.Hour).UTC().Format(time.RFC3339) ||
				!strings.Contains(l.Detail, "1h0m0s ago, want max_age 300s (leeway 30s)") || !strings.Contains(l.Detail, `acr "urn:mfa", want one of "urn:mfa urn:hwk"`) {
				t.Errorf("decision log line %s", line)
			}
		}
		if strings.Contains(line, "eyJ") {
			t.Errorf("a decision log line holds a token: %s", line)
		}
	}
	if !found {
		t.Errorf("no decision log line for the too-old sign-in:\n%s", logs.String())
	}
}
