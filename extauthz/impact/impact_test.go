package impact

import (
	"bytes"
	"context"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/decisionlog"
	"github.com/scopegate/scopegate/extauthz/jwks"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/checkreq"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

var update = flag.Bool("update", false, "rewrite the golden reports")

const repoPolicies = "../../policies"

// decisionLog runs requests through the real Check path (policies/ in force) and returns
// the decision log it wrote.
func decisionLog(t *testing.T) []byte {
	t.Helper()
	return decisionLogWith(t, engine(t, repoPolicies))
}

// decisionLogWith is decisionLog with eng deciding.
func decisionLogWith(t *testing.T, eng *policy.Engine) []byte {
	t.Helper()
	key := testissuer.NewKey("k1", "ES256")
	is := testissuer.New(key)
	t.Cleanup(is.Close)
	src, err := jwks.New(jwks.Options{Name: "demo", Issuer: is.Issuer, URL: is.JWKSURL(), RefreshInterval: time.Hour,
		UnknownKIDInterval: time.Second, FetchTimeout: time.Second, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	changed := src.Changed()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	src.Start(ctx)
	<-changed
	ti := token.Issuer{Name: "demo", Issuer: is.Issuer, Audiences: []string{"orders-api"},
		Algorithms: config.DefaultAlgorithms, ScopeClaims: []string{"scope"}, ClientIDClaims: []string{"client_id"}, Leeway: 30 * time.Second, Keys: src}
	verifier := token.NewVerifier(token.Options{Issuers: []token.Issuer{ti}, Cache: token.NewCache(100)})
	var out bytes.Buffer
	dlog := decisionlog.New(&out, 1, 0).WithInput()
	svc := check.New(check.Options{Verifier: verifier, Policy: eng, DecisionLog: dlog,
		Headers: check.Headers{Subject: "x-scopegate-subject"}})

	tok := func(sub, client, scope string) string {
		c := is.Standard("orders-api", sub, scope, time.Hour)
		c["client_id"] = client
		return "Bearer " + testissuer.Sign(key, c, nil)
	}
	for _, r := range []struct{ id, method, path, route, scopes, authz string }{
		{"read-ok", "GET", "/orders/1", "orders-read", "orders:read", tok("alice", "web", "orders:read")},
		{"read-by-writer-1", "GET", "/orders/2", "orders-read", "orders:read", tok("bob", "web", "orders:write")},
		{"read-by-writer-2", "GET", "/orders/3", "orders-read", "orders:read", tok("carol", "web", "orders:write")},
		{"write-by-reader", "POST", "/orders", "orders-write", "orders:write", tok("alice", "web", "orders:read")},
		{"admin-support", "GET", "/admin/users", "admin", "admin", tok("dave", "support-console", "admin")},
		{"admin-ops", "GET", "/admin/users", "admin", "admin", tok("erin", "ops-console", "admin")},
		{"no-token", "GET", "/orders/1", "orders-read", "orders:read", ""},
	} {
		h := map[string]string{"user-agent": "impact-test", "cookie": "session=s3cr3t"}
		if r.authz != "" {
			h["authorization"] = r.authz
		}
		req := checkreq.Request{ID: r.id, Method: r.method, Path: r.path, Host: "api.example.com", Headers: h,
			ContextExtensions: map[string]string{"route": r.route, "scopes": r.scopes}}.MustBuild()
		if _, err := svc.Check(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if err := dlog.Close(); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); strings.Contains(s, "s3cr3t") || strings.Contains(s, "eyJ") {
		t.Fatalf("a credential in the decision log:\n%s", s)
	}
	return out.Bytes()
}

func engine(t *testing.T, path string) *policy.Engine {
	t.Helper()
	e, err := policy.New(context.Background(), policy.Options{Path: path, EvalTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// candidate is policies/ with two changes: orders:write no longer implies orders:read, and
// support-console joins the admin clients.
func candidate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	err := os.CopyFS(dir, os.DirFS(repoPolicies))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"scopegate/scope_hierarchy/data.json": "{}\n",
		"demo/data.json":                      `{"admin": {"allowed_clients": ["ops-console", "support-console"]}}` + "\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.Chmod(p, 0o644); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), fs.FileMode(0o644)); err != nil {
			t.Fatal(err)
		}
	}
	// The demo's own tests pin the old data; impact evaluates, it does not run tests.
	return dir
}

func TestImpactGolden(t *testing.T) {
	log := decisionLog(t)
	cand := engine(t, candidate(t))
	for _, tc := range []struct {
		name     string
		baseline *policy.Engine
	}{
		{"logged", nil},
		{"baseline", engine(t, repoPolicies)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Run(t.Context(), bytes.NewReader(log), Options{Candidate: cand, Baseline: tc.baseline,
				CandidateName: "candidate/", BaselineName: "policies/"})
			if err != nil {
				t.Fatal(err)
			}
			var text, js bytes.Buffer
			if err := rep.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if err := rep.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			golden(t, "report-"+tc.name+".txt", text.Bytes())
			golden(t, "report-"+tc.name+".json", js.Bytes())
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Fatalf("%s differs (-want +got):\n%s", p, diff)
	}
}

func TestKinds(t *testing.T) {
	allow := Outcome{Allow: true, Status: 200}
	deny := Outcome{Status: 403, Reason: "insufficient_scope", MissingScopes: []string{"a"}}
	for _, tc := range []struct {
		name          string
		before, after Outcome
		want          string
	}{
		{"same allow", allow, allow, ""},
		{"same deny", deny, deny, ""},
		{"allow to deny", allow, deny, AllowToDeny},
		{"deny to allow", deny, allow, DenyToAllow},
		{"status", deny, Outcome{Status: 400, Reason: "insufficient_scope", MissingScopes: []string{"a"}}, StatusChange},
		{"reason", deny, Outcome{Status: 403, Reason: "client_not_allowed", MissingScopes: []string{"a"}}, ReasonChange},
		{"missing scopes", deny, Outcome{Status: 403, Reason: "insufficient_scope", MissingScopes: []string{"a", "b"}}, MissingChange},
	} {
		if got := kind(tc.before, tc.after); got != tc.want {
			t.Errorf("%s: kind = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestBadLogNamesTheLine(t *testing.T) {
	_, err := Run(t.Context(), strings.NewReader("{\"allow\":true}\nnot json\n"), Options{Candidate: engine(t, repoPolicies)})
	if err == nil || !strings.Contains(err.Error(), "decision log line 2") {
		t.Fatalf("err = %v", err)
	}
}

// Lines decided while no policy was in force (503 no_policy: the bundle had not arrived) carry
// an input, but no policy decided them: they are counted apart, never replayed as flips.
func TestNoPolicyLinesAreNotDecisions(t *testing.T) {
	log := decisionLogWith(t, policy.NewPending(policy.Options{}))
	if !bytes.Contains(log, []byte(`"reason":"no_policy"`)) || !bytes.Contains(log, []byte(`"input":`)) {
		t.Fatalf("want no_policy lines with input:\n%s", log)
	}
	rep, err := Run(t.Context(), bytes.NewReader(log), Options{Candidate: engine(t, repoPolicies), CandidateName: "policies/"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Flips != 0 || rep.Replayed != 0 || rep.NoPolicy != 6 || rep.Skipped != 1 || rep.Lines != 7 {
		t.Errorf("report %+v: want 6 no_policy lines skipped apart, 1 without input, nothing replayed", rep)
	}
	var text bytes.Buffer
	_ = rep.WriteText(&text)
	if !strings.Contains(text.String(), "6 decided before any policy was loaded (no_policy) skipped") {
		t.Errorf("text report:\n%s", text.String())
	}
}

// A log read while authz is still writing it ends in half a line: impact says so and replays
// the rest, rather than failing on it; a broken line anywhere else is still an error.
func TestIncompleteLastLine(t *testing.T) {
	log := decisionLog(t)
	full, err := Run(t.Context(), bytes.NewReader(log), Options{Candidate: engine(t, repoPolicies)})
	if err != nil || full.Incomplete {
		t.Fatalf("whole log: %+v, %v", full, err)
	}
	cut := log[:len(log)-40] // the last line without its end
	rep, err := Run(t.Context(), bytes.NewReader(cut), Options{Candidate: engine(t, repoPolicies)})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Incomplete || rep.Lines != full.Lines-1 {
		t.Errorf("cut log: incomplete %v, %d lines; want true, %d", rep.Incomplete, rep.Lines, full.Lines-1)
	}
	var text bytes.Buffer
	_ = rep.WriteText(&text)
	if !strings.Contains(text.String(), "last line is incomplete") {
		t.Errorf("text report does not say so:\n%s", text.String())
	}
	// The same half line followed by more lines is corruption, not a write in progress.
	lines := bytes.SplitAfter(log, []byte("\n"))
	broken := append(append(slices.Clone(lines[0][:len(lines[0])-40]), '\n'), bytes.Join(lines[1:], nil)...)
	if _, err := Run(t.Context(), bytes.NewReader(broken), Options{Candidate: engine(t, repoPolicies)}); err == nil || !strings.Contains(err.Error(), "decision log line 1") {
		t.Errorf("a broken first line: err = %v", err)
	}
}
