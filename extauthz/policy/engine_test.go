package policy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/policies"
)

func TestSplitPath(t *testing.T) {
	tests := []struct {
		path string
		want []string
	}{
		{"/", []string{""}},
		{"/orders", []string{"orders"}},
		{"/orders/1/", []string{"orders", "1", ""}},
		{"//admin", []string{"", "admin"}},
		{"/%61dmin/x", []string{"admin", "x"}},
		{"/a%2Fb/c", []string{"a/b", "c"}}, // an encoded slash stays inside its segment
		{"/%zz/ok", []string{"%zz", "ok"}}, // bad escapes stay raw
		{"/a%2F..%2Fadmin", []string{"a/../admin"}},
		{"/space%20here", []string{"space here"}},
	}
	for _, tt := range tests {
		if got := splitPath(tt.path); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitPath(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
	if p, q := splitPathQuery("/a/b?x=1&y"); p != "/a/b" || q != "x=1&y" {
		t.Errorf("splitPathQuery = %q %q", p, q)
	}
	if got := parseQuery("a=1&a=2&b&c=%zz&d=x%20y"); !reflect.DeepEqual(got, map[string][]string{"a": {"1", "2"}, "b": {""}, "c": {"%zz"}, "d": {"x y"}}) {
		t.Errorf("parseQuery = %v", got)
	}
	r := routeFrom(map[string]string{"route": "r", "scopes": " a  b ", "mode": "shadow", "team": "x"})
	if r.Name != "r" || !reflect.DeepEqual(r.Scopes, []string{"a", "b"}) || r.Mode != "shadow" || r.Extra["team"] != "x" || len(r.Extra) != 1 {
		t.Errorf("RouteOf = %+v", r)
	}
	if r := routeFrom(nil); r.Scopes == nil || len(r.Scopes) != 0 {
		t.Errorf("no scopes must be an empty list, got %#v", r.Scopes)
	}
}

func TestDecodeDecision(t *testing.T) {
	tests := []struct {
		rego    string
		want    Decision
		wantErr string
	}{
		{`true`, Decision{Allow: true}, ""},
		{`false`, Decision{}, ""},
		{`{"allow": true, "headers": {"x-b": "2", "x-a": "1"}, "response_headers": {"x-c": "3"}}`,
			Decision{Allow: true, Headers: []Header{{"x-a", "1"}, {"x-b", "2"}}, ResponseHeaders: []Header{{"x-c", "3"}}}, ""},
		{`{"allow": false, "status": 429, "reason": "slow_down", "missing_scopes": ["b", "a"], "reasons": ["ignored"]}`,
			Decision{Status: 429, Reason: "slow_down", MissingScopes: []string{"b", "a"}}, ""},
		{`{"allow": false, "missing_scopes": {"b", "a"}}`, Decision{MissingScopes: []string{"a", "b"}}, ""},
		{`{"status": 403}`, Decision{}, `no "allow"`},
		{`{"allow": "yes"}`, Decision{}, `"allow" is string`},
		{`{"allow": 1}`, Decision{}, `"allow" is number`},
		{`{"allow": false, "status": 99}`, Decision{}, `not an HTTP status`},
		{`{"allow": false, "status": 403.5}`, Decision{}, `not an HTTP status`},
		{`{"allow": false, "reason": 3}`, Decision{}, `"reason"`},
		{`{"allow": false, "missing_scopes": "a"}`, Decision{}, `"missing_scopes"`},
		{`{"allow": false, "missing_scopes": [1]}`, Decision{}, `"missing_scopes"`},
		{`{"allow": true, "headers": ["x"]}`, Decision{}, `"headers"`},
		{`{"allow": true, "headers": {"x": 1}}`, Decision{}, `"headers"`},
		{`{"allow": true, "headers": {"Bad Name": "v"}}`, Decision{}, `not a lower-case token`},
		// Step-up (RFC 9470): a 401 insufficient_user_authentication with what to ask for.
		{`{"allow": false, "status": 401, "reason": "insufficient_user_authentication", "acr_values": ["urn:mfa", "urn:hwk"], "max_age": 300}`,
			Decision{Status: 401, Reason: "insufficient_user_authentication", ACRValues: []string{"urn:mfa", "urn:hwk"}, MaxAge: ptr(int64(300))}, ""},
		{`{"allow": false, "reason": "insufficient_user_authentication", "max_age": 0}`,
			Decision{Status: 401, Reason: "insufficient_user_authentication", MaxAge: ptr(int64(0))}, ""},
		{`{"allow": false, "reason": "insufficient_user_authentication", "acr_values": {"b", "a"}}`,
			Decision{Status: 401, Reason: "insufficient_user_authentication", ACRValues: []string{"a", "b"}}, ""},
		{`{"allow": false, "reason": "insufficient_user_authentication"}`, Decision{}, `without "acr_values" or "max_age"`},
		{`{"allow": false, "status": 403, "reason": "insufficient_user_authentication", "max_age": 60}`, Decision{}, `step-up is 401`},
		{`{"allow": true, "reason": "insufficient_user_authentication", "max_age": 60}`, Decision{}, `on an allow`},
		{`{"allow": false, "status": 401, "reason": "mfa", "acr_values": ["urn:mfa"]}`, Decision{}, `without reason "insufficient_user_authentication"`},
		{`{"allow": true, "max_age": 60}`, Decision{}, `without reason "insufficient_user_authentication"`},
		{`{"allow": false, "reason": "insufficient_user_authentication", "max_age": 60, "missing_scopes": ["a"]}`, Decision{}, `"missing_scopes"`},
		{`{"allow": false, "reason": "insufficient_user_authentication", "acr_values": ["a\r\nx-evil: 1"]}`, Decision{}, `is not an acr value`},
		{`{"allow": false, "reason": "insufficient_user_authentication", "acr_values": ["a b"]}`, Decision{}, `is not an acr value`},
		{`{"allow": false, "reason": "insufficient_user_authentication", "acr_values": ["a\"b"]}`, Decision{}, `is not an acr value`},
		{`{"allow": false, "reason": "insufficient_user_authentication", "acr_values": "urn:mfa"}`, Decision{}, `"acr_values"`},
		{`{"allow": false, "reason": "insufficient_user_authentication", "max_age": 1.5}`, Decision{}, `"max_age"`},
		{`{"allow": false, "reason": "insufficient_user_authentication", "max_age": -1}`, Decision{}, `"max_age"`},
		{`{"allow": false, "reason": "insufficient_user_authentication", "max_age": "300"}`, Decision{}, `"max_age"`},
		{`{"allow": false, "reason": "insufficient_user_authentication", "max_age": 99999999999}`, Decision{}, `"max_age"`},
		{`"allow"`, Decision{}, `want an object or a boolean`},
		{`[true]`, Decision{}, `want an object or a boolean`},
	}
	for _, tt := range tests {
		v, err := ast.ParseTerm(tt.rego)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeDecision(v.Value)
		if tt.wantErr != "" {
			if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v, want %q", tt.rego, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %+v, %v; want %+v", tt.rego, got, err, tt.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// input.route carries the step-up requirements as typed fields, only on routes that have them.
func TestRouteFromStepUp(t *testing.T) {
	r := routeFrom(map[string]string{contract.ExtRoute: "refunds", contract.ExtACRValues: "urn:mfa urn:hwk", contract.ExtMaxAge: "300"})
	if !reflect.DeepEqual(r.ACRValues, []string{"urn:mfa", "urn:hwk"}) || r.MaxAge == nil || *r.MaxAge != 300 || r.Extra != nil {
		t.Errorf("route %+v", r)
	}
	term := routeTerm(&r)
	if got := term.Get(ast.StringTerm("max_age")); got == nil || got.String() != "300" {
		t.Errorf("input.route.max_age = %v", got)
	}
	if got := term.Get(ast.StringTerm("acr_values")); got == nil || got.String() != `["urn:mfa", "urn:hwk"]` {
		t.Errorf("input.route.acr_values = %v", got)
	}
	plain := routeFrom(map[string]string{contract.ExtRoute: "orders"})
	if pt := routeTerm(&plain); pt.Get(ast.StringTerm("max_age")) != nil || pt.Get(ast.StringTerm("acr_values")) != nil {
		t.Errorf("a route without requirements has them in input.route: %v", pt)
	}
	// A max_age that is no number passes through as the string it is (the Check refuses the
	// route before any policy runs).
	bad := routeFrom(map[string]string{contract.ExtMaxAge: "5m"})
	if bad.MaxAge != nil || bad.Extra[contract.ExtMaxAge] != "5m" {
		t.Errorf("route %+v", bad)
	}
}

func writePolicy(t testing.TB, dir, src string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
}

func sampleInput(scopes ...string) ast.Value {
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/orders"}},
		ContextExtensions: map[string]string{contract.ExtRoute: "orders-read", contract.ExtScopes: "orders:read"},
	}}
	v := NewView(req)
	tok := Token{Issuer: "demo", Sub: "alice", Scopes: scopes, Aud: []string{"orders-api"}}
	return BuildInput(&v, &needAll, tok.Term())
}

func TestFailClosedOnEveryPolicyError(t *testing.T) {
	tests := []struct {
		name, src, class string
		timeout          time.Duration
	}{
		{"undefined", "package scopegate.authz\ndecision := {\"allow\": true} if input.nope\n", "undefined", 0},
		{"conflict", "package scopegate.authz\ndecision := {\"allow\": true} if true\ndecision := {\"allow\": false} if true\n", "conflict", 0},
		{"non-boolean allow", "package scopegate.authz\ndecision := {\"allow\": \"true\"}\n", "malformed", 0},
		{"no allow", "package scopegate.authz\ndecision := {\"status\": 200}\n", "malformed", 0},
		{"builtin error", "package scopegate.authz\ndecision := {\"allow\": to_number(\"x\") > 0}\n", "eval_error", 0},
		{"over the time budget", "package scopegate.authz\ndecision := {\"allow\": count([x | some x in numbers.range(1, 100000000)]) > 0}\n", "timeout", 20 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writePolicy(t, dir, tt.src)
			e, err := New(context.Background(), Options{Path: dir, EvalTimeout: tt.timeout})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			d, err := e.Eval(context.Background(), e.Revision(), sampleInput("orders:read"))
			var de *denial.Denial
			if !errors.As(err, &de) || ErrorClass(err) != tt.class || de.Kind != denial.ServerError {
				t.Fatalf("Eval = %+v, %v; want a failure of class %s", d, err, tt.class)
			}
			if d.Allow {
				t.Fatal("an error allowed")
			}
			if tt.timeout > 0 && time.Since(start) > 2*time.Second {
				t.Fatalf("the time budget did not stop evaluation (%s)", time.Since(start))
			}
		})
	}
}

func TestDefaultPolicy(t *testing.T) {
	e, err := New(context.Background(), Options{FS: policies.Default, RunTests: true})
	if err != nil {
		t.Fatal(err)
	}
	if e.Revision().Tests == 0 {
		t.Error("the built-in policy's tests did not run")
	}
	d, err := e.Eval(context.Background(), e.Revision(), sampleInput("orders:read"))
	if err != nil || !d.Allow {
		t.Fatalf("allow: %+v %v", d, err)
	}
	d, err = e.Eval(context.Background(), e.Revision(), sampleInput("profile"))
	if err != nil || d.Allow || d.Status != 403 || !reflect.DeepEqual(d.MissingScopes, []string{"orders:read"}) {
		t.Fatalf("deny: %+v %v", d, err)
	}
	if want := (Fields{Cacheable: true, Shareable: true, Token: reads("", "scopes").Token}); !reflect.DeepEqual(e.Revision().Reads, want) {
		t.Errorf("the default policy reads %+v, want %+v: its decisions should be shared by tokens with the same scopes", e.Revision().Reads, want)
	}
}

// reads is a Fields for tests: request and token fields by name, space-separated, and the
// header names read.
func reads(request, tok string, headers ...string) Fields {
	var f Fields
	for _, n := range strings.Fields(request) {
		i := slices.IndexFunc(requestFields[:], func(r requestField) bool { return r.name == n })
		if i < 0 {
			panic("no request field " + n)
		}
		f.Request |= 1 << i
	}
	if tok == "*" {
		f.Token = allToken
	}
	for _, n := range strings.Fields(tok) {
		if n == "*" {
			continue
		}
		i := slices.IndexFunc(tokenFields[:], func(r tokenField) bool { return r.name == n })
		if i < 0 {
			panic("no token field " + n)
		}
		f.Token |= 1 << i
	}
	f.HeaderNames = headers
	return f
}

// The built-in policy carries no scope model of its own: orders:write implies nothing there,
// while the demo's policy directory (with its scope_hierarchy data) grants orders:read by it.
func TestBuiltInPolicyImpliesNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		allow bool
	}{
		{"built-in", Options{FS: policies.Default, RunTests: true}, false},
		{"demo directory", Options{Path: "../../policies", RunTests: true}, true},
	} {
		e, err := New(context.Background(), tc.opts)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		d, err := e.Eval(context.Background(), e.Revision(), sampleInput("orders:write"))
		if err != nil || d.Allow != tc.allow {
			t.Errorf("%s: orders:write on a route requiring orders:read: %+v %v, want allow=%v", tc.name, d, err, tc.allow)
		}
	}
}

func TestAnalyzeNeeds(t *testing.T) {
	with := func(f Fields, edit func(*Fields)) Fields { edit(&f); return f }
	cs := func(f *Fields) { f.Cacheable, f.Shareable = true, true }
	shareable := func(f *Fields) { f.Shareable = true }
	cacheable := func(f *Fields) { f.Cacheable = true }
	anyHeader := func(f *Fields) { f.AnyHeader = true }
	tests := []struct {
		src  string
		want Fields
	}{
		{`allow if input.token.sub == "a"`, with(reads("", "sub"), cs)},
		{`allow if input.request.method == "GET"`, with(reads("method", ""), cs)},
		{`allow if input.request.path == "/"`, with(reads("path", ""), shareable)},
		{`allow if input.token.exp > time.now_ns() / 1000000000`, reads("", "exp")},
		{`allow if input.route.scopes[_] == data.x`, with(reads("", ""), cs)},
		// io.jwt.decode_verify is not flagged non-deterministic by OPA, but checks exp against the clock.
		{`allow if { [ok, _, _] := io.jwt.decode_verify(data.jwt, {"cert": data.cert}); ok }`, reads("", "")},
		{`allow if input.request.headers["x-a"] == "1"`, with(reads("headers", "", "x-a"), shareable)},
		{`allow if { input.request.headers["x-b"] == "1"; input.request.headers.x_a == "2"; input.request.headers["x-b"] != "" }`,
			with(reads("headers", "", "x-b", "x_a"), shareable)},
		{`allow if input.request.headers[k] == "1"`, with(reads("headers", ""), anyHeader)},
		{`allow if count(input.request.headers) > 3`, with(reads("headers", ""), anyHeader)},
		{`allow if input.request.query.a[0] == "1"`, with(reads("query", ""), shareable)},
		{`allow if input.request.path_segments[0] == "a"`, with(reads("path_segments", ""), shareable)},
		{`allow if startswith(input.request.source_address, "10.")`, with(reads("source_address", ""), shareable)},
		{`allow if { input.request.host == "a"; input.request.scheme == "https"; input.request.protocol == "HTTP/2" }`,
			with(reads("host scheme protocol", ""), shareable)},
		{`allow if input.request.body == "x"`, with(reads("", ""), func(f *Fields) { f.Unknown = true })},
		{`allow if object.get(input.request, "headers", {}) != {}`, needAll},
		{`allow if input.request[x] == "a"`, needAll},
		{`allow if walk(input, _)`, needAll},
		{`r := input`, needAll},
		// Token reads: named fields can key a shared decision; claims and the whole token can't.
		{`allow if { {"a", "b"} & {s | some s in input.token.scopes} != set(); input.token.client_id == "c" }`,
			with(reads("", "scopes client_id"), cs)},
		{`allow if { input.token.aud[_] == "x"; input.token.iss == "i"; input.token.iat > 0; input.token.jti != ""; input.token.issuer == "demo" }`,
			with(reads("", "aud iss iat jti issuer"), cs)},
		{`allow if input.token.claims.tenant == "t"`, with(reads("", "claims"), cacheable)},
		{`allow if object.get(input.token, "scopes", []) != []`, with(reads("", "*"), cacheable)},
		{`allow if input.token[k] == "a"`, with(reads("", "*"), cacheable)},
		{`allow if input.token.nonsense == "a"`, with(reads("", "*"), cacheable)},
		{`allow if input.token.scopes with input.token as {"scopes": ["a"]}`, with(reads("", "*"), cacheable)},
		// A type test of an engine-built object is a constant: it reads nothing.
		{`allow if { is_object(input.token); is_object(input); is_object(input.request); input.token.scopes[_] == "a" }`,
			with(reads("", "scopes"), cs)},
		{`allow if type_name(input.route) == "object"`, with(reads("", ""), cs)},
		// ...but a type test of anything else reads it.
		{`allow if is_string(input.token.claims.x)`, with(reads("", "claims"), cacheable)},
		{`allow if is_object(input.request.headers)`, with(reads("headers", ""), anyHeader)},
		{`allow if data.x[input.request.headers.k]`, with(reads("headers", "", "k"), shareable)},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		writePolicy(t, dir, "package p\n"+tt.src+"\n")
		b, err := Load(dir, nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.src, err)
		}
		if got := analyzeNeeds(b); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: needs %+v, want %+v", tt.src, got, tt.want)
		}
	}
}

const goodPolicy = `package scopegate.authz
decision := {"allow": "orders:read" in input.token.scopes}
`

const goodPolicyV2 = `package scopegate.authz
decision := {"allow": "orders:read" in input.token.scopes, "reason": "v2"}
`

const failingTest = `package scopegate.authz_test
import data.scopegate.authz
test_fails if authz.decision.allow with input as {"token": {"scopes": []}}
`

func TestReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	writePolicy(t, dir, goodPolicy)
	e, err := New(context.Background(), Options{Path: dir, RunTests: true})
	if err != nil {
		t.Fatal(err)
	}
	first := e.Revision().ID

	// A stream of Checks runs throughout; none may fail.
	var failures, evals atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				d, err := e.Eval(context.Background(), e.Revision(), sampleInput("orders:read"))
				evals.Add(1)
				if err != nil || !d.Allow {
					failures.Add(1)
				}
			}
		})
	}
	ctx := context.Background()
	for _, step := range []struct {
		name, src, test string
		wantErr         bool
	}{
		{"syntax error", "package scopegate.authz\ndecision := {", "", true},
		{"compile error", "package scopegate.authz\ndecision := {\"allow\": undefined_fn(1)}\n", "", true},
		{"query not defined", "package scopegate.other\ndecision := true\n", "", true},
		{"failing test", goodPolicy, failingTest, true},
		{"good again", goodPolicyV2, "", false},
	} {
		writePolicy(t, dir, step.src)
		testFile := filepath.Join(dir, "p_test.rego")
		if step.test != "" {
			_ = os.WriteFile(testFile, []byte(step.test), 0o600)
		} else {
			_ = os.Remove(testFile)
		}
		rev, err := e.Reload(ctx)
		if step.wantErr {
			if err == nil {
				t.Fatalf("%s: reload accepted", step.name)
			}
			if e.Revision().ID != first {
				t.Fatalf("%s: the revision in force changed", step.name)
			}
			continue
		}
		if err != nil || rev.ID == first || e.Revision() != rev {
			t.Fatalf("%s: %v", step.name, err)
		}
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 || evals.Load() == 0 {
		t.Fatalf("%d of %d evaluations failed during reloads", failures.Load(), evals.Load())
	}
	d, _ := e.Eval(ctx, e.Revision(), sampleInput("orders:read"))
	if d.Reason != "v2" {
		t.Fatalf("the new revision is not in force: %+v", d)
	}
}

func TestWatchReloads(t *testing.T) {
	dir := t.TempDir()
	writePolicy(t, dir, goodPolicy)
	e, err := New(context.Background(), Options{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan *Revision, 4)
	if err := e.Watch(ctx, 20*time.Millisecond, func(r *Revision, err error) {
		if err == nil {
			got <- r
		}
	}); err != nil {
		t.Fatal(err)
	}
	// Editors replace files by rename: do the same.
	tmp := filepath.Join(dir, ".p.rego.tmp")
	if err := os.WriteFile(tmp, []byte(goodPolicyV2), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "p.rego")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if e.Revision() != r {
			t.Fatal("reloaded revision not in force")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reload after the file changed")
	}
}

// TestCountsTestsAsOPADoes: a data-driven test counts once per case, as `opa test` reports it
// (PASS: 4/4 here), in the revision /readyz shows.
func TestCountsTestsAsOPADoes(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"p.rego": "package p\n\ndouble(x) := 2 * x\n\nok := true\n",
		"p_test.rego": `package p_test

import data.p

test_double[name] if {
	some name, c in {"one": [1, 2], "two": [2, 4], "three": [3, 6]}
	p.double(c[0]) == c[1]
}

test_plain if p.double(0) == 0
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e, err := New(context.Background(), Options{Path: dir, Query: "data.p.ok", RunTests: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Revision().Tests; got != 4 {
		t.Fatalf("tests_passed = %d, want 4 (three cases and a plain test, as opa test counts)", got)
	}
}

// A Rego syntax error is reported once (OPA's parser gives the same error twice, the second
// with a hint), and a reload that undoes a rejected change is logged, as is a reload to an
// earlier revision.
func TestReloadLogs(t *testing.T) {
	dir := t.TempDir()
	writePolicy(t, dir, goodPolicy)
	var logs bytes.Buffer
	e, err := New(context.Background(), Options{Path: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	first := e.Revision().ID
	writePolicy(t, dir, "package scopegate.authz\ndecision := {")
	_, err = e.Reload(context.Background())
	if err == nil || strings.Count(err.Error(), "rego_parse_error") != 1 || !strings.Contains(err.Error(), "expected rule value term") {
		t.Fatalf("syntax error: want one detailed parse error, got %v", err)
	}
	writePolicy(t, dir, goodPolicy)
	logs.Reset()
	if rev, err := e.Reload(context.Background()); err != nil || rev.ID != first {
		t.Fatalf("fixed: %v", err)
	}
	if !strings.Contains(logs.String(), "the revision in force is unchanged") || !strings.Contains(logs.String(), "revision="+first) {
		t.Errorf("a fix back to the revision in force logged:\n%s", logs.String())
	}
	writePolicy(t, dir, goodPolicyV2)
	if _, err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := e.Revision().ID
	writePolicy(t, dir, goodPolicy)
	logs.Reset()
	if _, err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "policy revision loaded") || !strings.Contains(logs.String(), "revision="+first) || !strings.Contains(logs.String(), "previous="+second) {
		t.Errorf("back to an earlier revision:\n%s", logs.String())
	}
}

// routeFrom is input.route of context extensions.
func routeFrom(ext map[string]string) Route {
	c, _ := contract.Parse(ext)
	return RouteOf(&c)
}
