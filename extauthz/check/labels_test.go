package check_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/internal/checkreq"
	"github.com/scopegate/scopegate/internal/contract"
)

// A policy that makes its deny reason from request data (here the path) can't grow
// scopegate_checks_total (or the shadow counter) without bound: the first
// check.MaxPolicyReasons reasons keep their value, the rest count as "other"; scopegate's own
// reasons always keep theirs.
func TestPolicyReasonLabelsBounded(t *testing.T) {
	r, _, _, k, reg := policyRigMetrics(t, `package scopegate.authz

decision := {"allow": false, "status": 403, "reason": concat("", ["r-", input.request.path_segments[0]])}
`)
	tok := r.token(k, 1, "orders:read")
	send := func(path string) {
		req := checkreq.Request{Method: "GET", Path: path, Host: "api.example.com",
			ContextExtensions: map[string]string{contract.ExtRoute: "orders-read"}}
		req.Add("authorization", "Bearer "+tok)
		if allowed(t, r.svc, req.MustBuild()) {
			t.Fatal("allowed")
		}
	}
	const n = 3 * check.MaxPolicyReasons
	for i := range n {
		send(fmt.Sprintf("/p%d", i))
	}
	send("/" + "x{y}")                                // not a safe label value
	send("/" + fmt.Sprintf("%0100d", 7))              // too long
	send("/p0")                                       // admitted earlier: keeps its value
	_, _ = r.svc.Check(t.Context(), checkreq.Request{ // a fixed reason, after the budget is spent
		Method: "GET", Path: "/p0", Host: "api.example.com"}.MustBuild())

	reasons := reasonCounts(t, reg, "deny")
	if len(reasons) > check.MaxPolicyReasons+2 {
		t.Fatalf("%d distinct reason label values; want at most %d policy ones + other + missing_token", len(reasons), check.MaxPolicyReasons)
	}
	if got, want := reasons[check.OtherReason], float64(n-check.MaxPolicyReasons+2); got != want {
		t.Fatalf(`"other" counted %v, want %v`, got, want)
	}
	if reasons["r-p0"] != 2 || reasons[contract.ReasonMissingToken] != 1 {
		t.Fatalf("r-p0 %v, missing_token %v; want 2 and 1", reasons["r-p0"], reasons[contract.ReasonMissingToken])
	}
}

// reasonCounts reads scopegate_checks_total{result} by reason.
func reasonCounts(t *testing.T, reg *prometheus.Registry, result string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "scopegate_checks_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["result"] == result {
				out[labels["reason"]] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// A policy's reason never reaches the client: the body is generic, and policies/README.md
// says so (it once said the reason went into the JSON error body).
func TestPolicyReasonStaysOutOfTheBody(t *testing.T) {
	r, _, _, k := policyRig(t, `package scopegate.authz

decision := {"allow": false, "status": 403, "reason": "client_on_the_blocklist"}
`)
	req := checkreq.Request{Method: "GET", Path: "/orders/1", Host: "api.example.com",
		ContextExtensions: map[string]string{contract.ExtRoute: "orders-read"}}
	req.Add("authorization", "Bearer "+r.token(k, 1, "orders:read"))
	resp, err := r.svc.Check(t.Context(), req.MustBuild())
	if err != nil {
		t.Fatal(err)
	}
	body := resp.GetDeniedResponse().GetBody()
	if body != `{"error":"access_denied","error_description":"the request is not allowed"}` {
		t.Fatalf("denial body %s", body)
	}
	readme, err := os.ReadFile("../../policies/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "| `reason` |") && (strings.Contains(line, "goes into the JSON error body") || !strings.Contains(line, "never reaches the client")) {
			t.Fatalf("policies/README.md's reason row disagrees with the generic body: %s", line)
		}
	}
}
