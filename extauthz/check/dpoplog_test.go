package check_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/extauthz/decisionlog"
	"github.com/scopegate/scopegate/extauthz/dpop"
	"github.com/scopegate/scopegate/internal/checkreq"
	"github.com/scopegate/scopegate/internal/contract"
)

// TestDecisionLogNeverHoldsDPoP (issue 19, item 8): with include_input, no line holds a DPoP
// header's value or any part of it, allowed or refused, in whatever case the name comes,
// nor a header a proxy copied it into; decision_log.hidden_headers hides more; the other
// headers are still logged for replay.
func TestDecisionLogNeverHoldsDPoP(t *testing.T) {
	b := newBindingRig(t)
	const uri = "https://api.example.com/orders/1"
	proofs, err := dpop.New(dpop.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	dlog := decisionlog.New(&logs, 1, 0).WithInput().WithHiddenHeaders("x-api-key")
	svc := check.New(check.Options{Verifier: b.r.verifier, DPoP: proofs, Headers: identityHeaders, DecisionLog: dlog})
	read := map[string]string{contract.ExtRoute: "orders-read", contract.ExtScopes: "orders:read"}
	bound := b.token(map[string]any{"jkt": b.jkt})
	plain := b.token(nil)
	thief := ecKey(t)

	var secrets []string
	secret := func(s string) string {
		secrets = append(secrets, s)
		if parts := strings.Split(s, "."); len(parts) == 3 {
			secrets = append(secrets, parts[1], parts[2]) // payload and signature alone
		}
		return s
	}
	good := secret(b.proof(t, b.holder, "GET", uri, bound, ""))
	stolen := secret(b.proof(t, thief, "GET", uri, bound, ""))
	withHeaders := func(scheme, tok string, h map[string]string) *authv3.CheckRequest {
		r := checkreq.Request{Method: "GET", Path: "/orders/1?x=1", Host: "api.example.com", ContextExtensions: read,
			Headers: map[string]string{"authorization": scheme + " " + tok, "x-keep": "replayable"}}
		req := r.MustBuild()
		for k, v := range h { // as given: not every client lower-cases names as Envoy does
			req.Attributes.Request.Http.Headers[k] = v
		}
		return req
	}
	for _, req := range []*authv3.CheckRequest{
		withHeaders("DPoP", bound, map[string]string{"dpop": good}),                                // allowed
		withHeaders("DPoP", bound, map[string]string{"dpop": stolen}),                              // refused: another key
		withHeaders("DPoP", bound, map[string]string{"DPoP": good, "x-forwarded-dpop": good}),      // a name in another case, a copy
		withHeaders("Bearer", plain, map[string]string{"dpop": secret(plain)}),                     // the token itself in the DPoP header
		withHeaders("Bearer", plain, map[string]string{"X-Api-Key": secret("api-key-0123456789")}), // hidden_headers
	} {
		if _, err := svc.Check(t.Context(), req); err != nil {
			t.Fatal(err)
		}
	}
	if err := dlog.Close(); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5:\n%s", len(lines), out)
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the decision log holds %.24q…", s)
		}
	}
	for i, l := range lines {
		var line struct {
			Input struct {
				Request struct{ Headers map[string]string }
			}
		}
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		h := line.Input.Request.Headers
		if h["x-keep"] != "replayable" {
			t.Errorf("line %d lost an innocent header: %v", i+1, h)
		}
		for k := range h {
			if strings.EqualFold(k, "dpop") || strings.EqualFold(k, "x-api-key") || k == "x-forwarded-dpop" {
				t.Errorf("line %d logs header %s", i+1, k)
			}
		}
	}
}
