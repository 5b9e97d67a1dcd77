package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/demo/democert"
	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/server"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// runCode runs the CLI in-process and returns its output, what main would print on stderr,
// and the exit status main would use.
func runCode(t *testing.T, args ...string) (out, stderr string, code int) {
	t.Helper()
	out, err := run(t, args...)
	if err == nil {
		return out, "", 0
	}
	if e, ok := err.(*exitError); ok && e.quiet {
		return out, "", e.code
	}
	return out, err.Error(), exitCode(err)
}

type checkResult struct {
	checkOutput
	Policy *struct {
		Decision *struct{ Allow bool } `json:"decision"`
		Fired    []string              `json:"rules_fired"`
	} `json:"policy"`
}

func parseCheck(t *testing.T, out string) checkResult {
	t.Helper()
	var r checkResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	return r
}

func TestCheckClaims(t *testing.T) {
	claims := filepath.Join(t.TempDir(), "claims.json")
	if err := os.WriteFile(claims, []byte(`{"iss":"i","sub":"alice","client_id":"orders-cli","scope":"orders:read","exp":9999999999}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		status int
	}{
		{"read allowed", []string{"--method", "GET", "--path", "/orders/1", "--route", "orders-read", "--scope", "orders:read"}, 0, 200},
		{"write denied", []string{"--method", "POST", "--path", "/orders", "--route", "orders-write", "--scope", "orders:write"}, 1, 403},
		{"admin from the wrong client", []string{"--path", "/admin/x", "--route", "admin", "--scopes", "admin"}, 1, 403},
		{"shadow route lets the denial through", []string{"--method", "POST", "--path", "/orders", "--route", "orders-write", "--scopes", "orders:write", "--mode", "shadow"}, 0, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, code := runCode(t, append([]string{"check", "--policy", "../../policies", "--claims", claims}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s", code, tt.code, out)
			}
			r := parseCheck(t, out)
			if r.Status != tt.status || !r.Unverified || r.Policy == nil || len(r.Policy.Fired) == 0 {
				t.Fatalf("status %d (want %d), unverified %v, policy %+v\n%s", r.Status, tt.status, r.Unverified, r.Policy, out)
			}
			if tt.status == 200 && !slices.Contains(r.UpstreamHeaders, "x-scopegate-subject: alice") {
				t.Fatalf("allowed without the identity headers: %v", r.UpstreamHeaders)
			}
		})
	}
}

// expiredToken is a well-formed token whose exp has passed.
func expiredToken(t *testing.T) string {
	is := testissuer.New(testissuer.NewKey("k1", "RS256"))
	defer is.Close()
	c := is.Standard("orders-api", "alice", "orders:read", time.Minute)
	c["exp"] = time.Now().Add(-time.Hour).Unix()
	return testissuer.Sign(testissuer.NewKey("k1", "RS256"), c, nil)
}

// TestCheckExitCodes: 0 allow, 1 deny, 2 usage or config error, whatever the cause.
func TestCheckExitCodes(t *testing.T) {
	expired := expiredToken(t)
	badCfg := filepath.Join(t.TempDir(), "authz.yaml")
	if err := os.WriteFile(badCfg, []byte("listen: :9191\nisuers: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unverified token refused", []string{"check", "--token", expired}, 2, "--unverified"},
		{"unverified token with --unverified", []string{"check", "--token", expired, "--unverified", "--route", "r", "--scopes", "orders:read"}, 0, `"unverified": true`},
		{"no token: 401", []string{"check", "--route", "r", "--scopes", "orders:read"}, 1, `"status": 401`},
		{"unknown flag", []string{"check", "--nope"}, 2, "unknown flag"},
		{"flag without its value", []string{"check", "--path"}, 2, "needs an argument"},
		{"bad duration", []string{"check", "--timeout", "soon"}, 2, "invalid argument"},
		{"unknown command", []string{"chekc"}, 2, "unknown command"},
		{"token and claims", []string{"check", "--token", expired, "--claims", "x.json"}, 2, "at most one"},
		{"header without a colon", []string{"check", "--header", "x-a"}, 2, "name:value"},
		{"--addr with --config", []string{"check", "--addr", "127.0.0.1:1", "--config", badCfg}, 2, "don't apply"},
		{"missing config", []string{"check", "--config", filepath.Join(t.TempDir(), "none.yaml")}, 2, "no such file"},
		{"bad config", []string{"check", "--config", badCfg}, 2, "isuers"},
		{"missing policy", []string{"check", "--policy", filepath.Join(t.TempDir(), "none"), "--unverified", "--token", expired}, 2, "none"},
		{"authz unreachable", []string{"check", "--addr", "127.0.0.1:1", "--timeout", "2s"}, 2, "127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, code := runCode(t, tt.args...)
			if code != tt.code || !strings.Contains(out+stderr, tt.want) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s", code, tt.code, tt.want, out)
			}
		})
	}
}

// authzYAML is an authz config for is, with the repository's policies.
func authzYAML(t *testing.T, is *testissuer.Issuer) string {
	t.Helper()
	return fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: "127.0.0.1:0"
issuers:
  - name: demo
    issuer: %q
    jwks_uri: %q
    audiences: [orders-api]
    require_typ: at+jwt
policy:
  path: %q
  run_tests: false # make test runs them; under -race they cost 1.5 s of CPU per start
decision_log:
  output: "off"
`, is.Issuer, is.JWKSURL(), filepath.Join(repoRoot(t), "policies"))
}

// startAuthz serves the authz config yaml in-process until the test ends.
func startAuthz(t *testing.T, yaml string) *server.Server {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// TestCheckConfigAndAddrAgree: the same flags give the same answer in-process (--config) and
// from a real authz over gRPC (--addr), and both exit by it.
func TestCheckConfigAndAddrAgree(t *testing.T) {
	key := testissuer.NewKey("k1", "RS256")
	is := testissuer.New(key)
	defer is.Close()
	yaml := authzYAML(t, is)
	cfgPath := filepath.Join(t.TempDir(), "authz.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startAuthz(t, yaml)

	tok := func(scope, client string, edit func(testissuer.Claims)) string {
		c := is.Standard("orders-api", "alice", scope, time.Hour) // outlives a slow run
		c["client_id"] = client
		if edit != nil {
			edit(c)
		}
		return testissuer.Sign(key, c, nil)
	}
	read := []string{"--route", "orders-read", "--scopes", "orders:read"}
	write := []string{"--method", "POST", "--path", "/orders", "--route", "orders-write", "--scopes", "orders:write"}
	stepUp := []string{"--method", "DELETE", "--path", "/orders/1", "--route", "orders-delete", "--scopes", "orders:write", "--acr-values", "urn:mfa urn:hwk", "--max-age", "5m"}
	tests := []struct {
		name      string
		args      []string
		code      int
		status    int
		grpc      string
		header    string // a response or upstream header that must be there
		tokenErr  string // in-process: what verification reports
		challenge string
		stepUp    string // in-process: what the step-up report's detail says
	}{
		{name: "no token", args: append([]string{"--path", "/orders"}, read...), code: 1, status: 401, grpc: "Unauthenticated", challenge: `Bearer realm="scopegate"`},
		{name: "token in the query", args: append([]string{"--path", "/orders?access_token=abc", "--token", tok("orders:read", "c", nil)}, read...), code: 1, status: 400, grpc: "InvalidArgument"},
		{name: "missing scope", args: append([]string{"--token", tok("orders:read", "c", nil)}, write...), code: 1, status: 403, grpc: "PermissionDenied", challenge: `scope="orders:write"`},
		{name: "allowed", args: append([]string{"--path", "/orders/1", "--token", tok("orders:read", "orders-cli", nil)}, read...), code: 0, status: 200, grpc: "OK", header: "x-scopegate-subject"},
		{name: "expired", args: append([]string{"--token", tok("orders:read", "c", func(c testissuer.Claims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })}, read...),
			code: 1, status: 401, grpc: "Unauthenticated", tokenErr: "expired 1h", challenge: `error="invalid_token"`},
		{name: "wrong audience", args: append([]string{"--token", tok("orders:read", "c", func(c testissuer.Claims) { c["aud"] = "billing" })}, read...),
			code: 1, status: 401, grpc: "Unauthenticated", tokenErr: `aud ["billing"], want one of ["orders-api"]`, challenge: `error="invalid_token"`},
		{name: "step-up: weaker and older sign-in", args: append([]string{"--token", tok("orders:write", "c", func(c testissuer.Claims) {
			c["acr"], c["auth_time"] = "urn:pwd", time.Now().Add(-time.Hour).Unix()
		})}, stepUp...), code: 1, status: 401, grpc: "Unauthenticated", challenge: `error="insufficient_user_authentication", error_description="a stronger and more recent authentication is required", acr_values="urn:mfa urn:hwk", max_age="300"`,
			stepUp: `acr "urn:pwd", want one of "urn:mfa urn:hwk"; auth_time `},
		{name: "step-up: no acr, no auth_time", args: append([]string{"--token", tok("orders:write", "c", nil)}, stepUp...), code: 1, status: 401, grpc: "Unauthenticated",
			challenge: `error="insufficient_user_authentication"`, stepUp: `acr none, want one of "urn:mfa urn:hwk"; auth_time none, want max_age 300s`},
		{name: "step-up met", args: append([]string{"--token", tok("orders:write", "c", func(c testissuer.Claims) {
			c["acr"], c["auth_time"] = "urn:hwk", time.Now().Add(-time.Minute).Unix()
		})}, stepUp...), code: 0, status: 200, grpc: "OK"},
		{name: "header reaches the policy", args: append([]string{"--path", "/orders/1", "--header", "X-Trace: 1", "--header", "x-trace: 2", "--token", tok("orders:read", "orders-cli", nil)}, read...), code: 0, status: 200, grpc: "OK"},
	}
	for _, tt := range tests {
		// --timeout: in-process, the policy (with its tests) compiles under the race detector.
		for _, mode := range [][]string{{"--config", cfgPath, "--timeout", "60s"}, {"--addr", srv.GRPCAddr()}} {
			t.Run(tt.name+" "+mode[0], func(t *testing.T) {
				out, stderr, code := runCode(t, append(append([]string{"check"}, mode...), tt.args...)...)
				if code != tt.code {
					t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, out, stderr)
				}
				r := parseCheck(t, out)
				if r.Status != tt.status || r.GRPCCode != tt.grpc || r.Unverified {
					t.Fatalf("status %d %s (want %d %s), unverified %v\n%s", r.Status, r.GRPCCode, tt.status, tt.grpc, r.Unverified, out)
				}
				if tt.challenge != "" && !slices.ContainsFunc(r.ResponseHeaders, func(h string) bool {
					return strings.HasPrefix(h, "www-authenticate: ") && strings.Contains(h, tt.challenge)
				}) {
					t.Errorf("no www-authenticate with %q: %q", tt.challenge, r.ResponseHeaders)
				}
				if tt.status >= 400 && !strings.Contains(r.Body, `"error"`) {
					t.Errorf("denial without a body: %q", r.Body)
				}
				if tt.header != "" && !slices.ContainsFunc(r.UpstreamHeaders, func(h string) bool { return strings.HasPrefix(h, tt.header+": ") }) {
					t.Errorf("no %s upstream: %v", tt.header, r.UpstreamHeaders)
				}
				if mode[0] == "--config" && tt.tokenErr != "" && (r.Token == nil || !strings.Contains(r.Token.Error, tt.tokenErr)) {
					t.Errorf("token report %+v lacks %q", r.Token, tt.tokenErr)
				}
				if mode[0] == "--config" && tt.stepUp != "" && (r.StepUp == nil || r.StepUp.Met || !strings.Contains(r.StepUp.Detail, tt.stepUp) ||
					strings.Join(r.StepUp.Required.ACRValues, " ") != "urn:mfa urn:hwk" || r.StepUp.Required.MaxAge != "5m0s") {
					t.Errorf("step-up report %+v lacks %q\n%s", r.StepUp, tt.stepUp, out)
				}
				if mode[0] == "--config" && tt.status == 200 && strings.Contains(tt.name, "step-up") && (r.StepUp == nil || !r.StepUp.Met || r.StepUp.Token.ACR != "urn:hwk" || !between(r.StepUp.Token.Age, time.Minute, 10*time.Minute)) {
					t.Errorf("step-up report %+v\n%s", r.StepUp, out)
				}
				if mode[0] == "--addr" && r.Authz != srv.GRPCAddr() {
					t.Errorf("authz %q", r.Authz)
				}
			})
		}
	}
}

// between reports whether s is a duration from lo to hi.
func between(s string, lo, hi time.Duration) bool {
	d, err := time.ParseDuration(s)
	return err == nil && d >= lo && d <= hi
}

// TestCheckConfigIdPDown: with the IdP down, check --config fails at once (exit 2) naming the
// URL and the cause, rather than waiting for keys that will not come.
func TestCheckConfigIdPDown(t *testing.T) {
	is := testissuer.New(testissuer.NewKey("k1", "RS256"))
	defer is.Close()
	is.SetMode(testissuer.Down)
	cfgPath := filepath.Join(t.TempDir(), "authz.yaml")
	if err := os.WriteFile(cfgPath, []byte(authzYAML(t, is)), 0o600); err != nil {
		t.Fatal(err)
	}
	before := is.Requests()
	_, out, code := runCode(t, "check", "--config", cfgPath, "--token", expiredToken(t), "--timeout", "60s")
	if code != 2 || !strings.Contains(out, is.JWKSURL()) || !strings.Contains(out, "issuer demo") {
		t.Fatalf("exit %d, want 2 naming issuer demo and %s:\n%s", code, is.JWKSURL(), out)
	}
	// The first failed fetch ends it: no retry, whatever the machine's speed (counted at the
	// IdP rather than timed, so a loaded machine compiling the policy slowly can't fail it).
	if n := is.Requests() - before; n != 1 {
		t.Errorf("%d key set requests: should fail on the first attempt", n)
	}
	var ee *exitError
	_, err := run(t, "check", "--config", cfgPath)
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("err %v", err)
	}
}

// TestDocumentedClaimsExample runs README's and policies/README.md's command as written, from
// the repository root, with the sample claims file they name.
func TestDocumentedClaimsExample(t *testing.T) {
	t.Chdir(repoRoot(t))
	out, _, code := runCode(t, "check", "--policy", "policies", "--claims", "examples/claims.json",
		"--method", "GET", "--path", "/orders/1", "--route", "orders-read", "--scopes", "orders:read")
	if code != 0 || !parseCheck(t, out).Unverified {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

// TestCheckAddrMutualTLS: against an authz that requires client certificates, check --addr
// gets its answer with --ca/--cert/--key, and without a client certificate it is refused
// (exit 2), as an Envoy without one would be.
func TestCheckAddrMutualTLS(t *testing.T) {
	key := testissuer.NewKey("k1", "RS256")
	is := testissuer.New(key)
	defer is.Close()
	certs := t.TempDir()
	if _, err := democert.WriteSet(certs, democert.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	p := func(name string) string { return filepath.Join(certs, name) }
	srv := startAuthz(t, authzYAML(t, is)+fmt.Sprintf("tls: {cert_file: %q, key_file: %q, client_ca_file: %q}\n",
		p("authz.crt"), p("authz.key"), p("ca.crt")))
	c := is.Standard("orders-api", "alice", "orders:read", time.Minute)
	tok := testissuer.Sign(key, c, nil)
	args := []string{"check", "--addr", srv.GRPCAddr(), "--token", tok, "--route", "orders-read", "--scopes", "orders:read", "--server-name", "authz", "--timeout", "10s"}
	out, _, code := runCode(t, append(args, "--ca", p("ca.crt"), "--cert", p("envoy.crt"), "--key", p("envoy.key"))...)
	if code != 0 || parseCheck(t, out).Status != 200 {
		t.Fatalf("with the client certificate: exit %d\n%s", code, out)
	}
	if _, stderr, code := runCode(t, append(args, "--ca", p("ca.crt"))...); code != 2 {
		t.Fatalf("without a client certificate: exit %d, want 2: %s", code, stderr)
	}
	if _, stderr, code := runCode(t, args...); code != 2 || !strings.Contains(stderr, "--ca") {
		t.Fatalf("plaintext to a TLS authz: exit %d, want 2 with a hint at --ca: %s", code, stderr)
	}
}
