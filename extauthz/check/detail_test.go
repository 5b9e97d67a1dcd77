package check_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/extauthz/decisionlog"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// TestRefusalDetailInDecisionLogOnly: the decision log line of a refused token says what
// differs (here exp against now); the challenge and body Envoy gets keep the short fixed
// description, and neither holds the token.
func TestRefusalDetailInDecisionLogOnly(t *testing.T) {
	key := testissuer.NewKey("k1", "RS256")
	r := newRig(t, []*testissuer.Key{key}, "token-only", 100)
	var logs bytes.Buffer
	dlog := decisionlog.New(&logs, 1, 0)
	svc := check.New(check.Options{Verifier: r.verifier, Headers: r.headers, DecisionLog: dlog})
	c := r.is.Standard("orders-api", "alice", "orders:read", time.Minute)
	c["exp"] = time.Now().Add(-time.Hour).Unix()
	tok := testissuer.Sign(key, c, nil)
	resp, err := svc.Check(context.Background(), request(tok))
	if err != nil {
		t.Fatal(err)
	}
	if err := dlog.Close(); err != nil {
		t.Fatal(err)
	}
	var line struct{ Reason, Detail string }
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, logs.String())
	}
	if line.Reason != "expired" || !strings.Contains(line.Detail, "exp ") || !strings.Contains(line.Detail, "now ") {
		t.Fatalf("decision log: %s", logs.String())
	}
	d := resp.GetDeniedResponse()
	var sent strings.Builder
	sent.WriteString(d.GetBody())
	for _, h := range d.GetHeaders() {
		sent.WriteString(h.GetHeader().GetValue())
	}
	if strings.Contains(sent.String(), "now ") || strings.Contains(sent.String(), "leeway") || !strings.Contains(sent.String(), "the token has expired") {
		t.Fatalf("the client got the detail or lost the description: %s", sent.String())
	}
	sig := tok[strings.LastIndex(tok, ".")+1:]
	if strings.Contains(logs.String(), sig) || strings.Contains(sent.String(), sig) {
		t.Fatal("the token was echoed")
	}
}
