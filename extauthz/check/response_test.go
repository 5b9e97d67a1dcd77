package check_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/dpop"
	"github.com/scopegate/scopegate/extauthz/jwks"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/checkreq"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/oauth"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

var update = flag.Bool("update", false, "rewrite testdata/responses golden files from the service's answers")

// identityHeaders are the default identity header names, as `scopegate authz` configures them.
var identityHeaders = check.Headers{Subject: contract.HeaderSubject, ClientID: contract.HeaderClientID,
	Scopes: contract.HeaderScopes, Issuer: contract.HeaderIssuer}

// A policy error: the decision is undefined for every input.
const undefinedPolicy = "package scopegate.authz\ndecision := {\"allow\": true} if input.route.name == \"nowhere\"\n"

// TestResponses holds what Envoy gets back, one golden CheckResponse per row of the README's
// "What Envoy gets back" table (and the shadow-mode rows of the Operations section), compared
// as protos. Run `go test ./extauthz/check -run TestResponses -update` to accept a change.
func TestResponses(t *testing.T) {
	k := testissuer.NewKey("k1", "ES256")
	r := newRig(t, []*testissuer.Key{k}, "demo-policy", 1000)
	demo := mustEngine(t, context.Background(), policy.Options{Path: "../../policies", EvalTimeout: 100 * time.Millisecond})
	undefined := policyEngine(t, undefinedPolicy)
	proofs, err := dpop.New(dpop.Options{}) // as `scopegate authz` runs by default: DPoP accepted
	if err != nil {
		t.Fatal(err)
	}
	svc := func(pol *policy.Engine, shadow bool) *check.Service {
		return check.New(check.Options{Verifier: r.verifier, Policy: pol, Headers: identityHeaders, MaxTokenBytes: 4096, Shadow: shadow, DPoP: proofs})
	}
	enforce, globalShadow, failing := svc(demo, false), svc(demo, true), svc(undefined, false)
	unreachable, unreachableIss := unreachableIssuer(t)
	noKeys := check.New(check.Options{Verifier: unreachable, Headers: identityHeaders, DPoP: proofs})

	// An issuer that also accepts opaque tokens by introspection.
	idp := goldenIntrospection(t)
	ri := newRigIntrospecting(t, []*testissuer.Key{k}, "demo-policy", 1000, idp.URL)
	introspecting := check.New(check.Options{Verifier: ri.verifier, Policy: demo, Headers: identityHeaders, MaxTokenBytes: 4096})

	tok := func(scope, client string, edit func(testissuer.Claims)) string {
		c := r.is.Standard("orders-api", "alice", scope, time.Hour)
		c["client_id"] = client
		if edit != nil {
			edit(c)
		}
		return testissuer.Sign(k, c, nil)
	}
	read := map[string]string{contract.ExtRoute: "orders-read", contract.ExtScopes: "orders:read"}
	write := map[string]string{contract.ExtRoute: "orders-write", contract.ExtScopes: "orders:write"}
	shadowWrite := map[string]string{contract.ExtRoute: "orders-write", contract.ExtScopes: "orders:write", contract.ExtMode: contract.ModeShadow}
	admin := map[string]string{contract.ExtRoute: "admin", contract.ExtScopes: "admin"}
	req := func(method, path string, ext map[string]string, headers ...string) *authv3.CheckRequest {
		rq := checkreq.Request{Method: method, Path: path, Host: "api.example.com", ContextExtensions: ext}
		rq.Add(contract.HeaderSubject, "spoofed") // a client's own identity header never reaches the upstream
		for i := 0; i+1 < len(headers); i += 2 {
			rq.Add(headers[i], headers[i+1])
		}
		return rq.MustBuild()
	}
	bearer := func(t string) string { return "Bearer " + t }
	holder := ecKey(t)
	jkt, err := oauth.Thumbprint(holder)
	if err != nil {
		t.Fatal(err)
	}
	boundTok := tok("orders:read", "orders-cli", func(c testissuer.Claims) { c["cnf"] = map[string]any{"jkt": jkt} })
	proof := func(key *ecdsa.PrivateKey, method, path string) string {
		p, err := oauth.SignProof(key, "ES256", oauth.ProofClaims{Method: method, URI: "https://api.example.com" + path, AccessToken: boundTok})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	bindingRequired := map[string]string{contract.ExtRoute: "orders-read", contract.ExtScopes: "orders:read", contract.ExtBinding: contract.BindingRequired}
	expired := tok("orders:read", "orders-cli", func(c testissuer.Claims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })

	// Step-up (RFC 9470): routes with acr_values and max_age, and a policy that asks itself.
	stepUp := func(extra map[string]string) map[string]string {
		out := withMetadata(map[string]string{contract.ExtRoute: "refunds", contract.ExtScopes: "orders:write"}, metadataURL)
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	acrRoute := stepUp(map[string]string{contract.ExtACRValues: "urn:example:mfa urn:example:hwk"})
	ageRoute := stepUp(map[string]string{contract.ExtMaxAge: "300"})
	bothRoute := stepUp(map[string]string{contract.ExtACRValues: "urn:example:mfa", contract.ExtMaxAge: "300"})
	signedIn := func(acr string, ago time.Duration, bound bool) string {
		return tok("orders:read orders:write", "orders-cli", func(c testissuer.Claims) {
			c["acr"], c["amr"], c["auth_time"] = acr, []string{"pwd"}, time.Now().Add(-ago).Unix()
			if bound {
				c["cnf"] = map[string]any{"jkt": jkt}
			}
		})
	}
	boundStepUp := signedIn("urn:example:pwd", time.Minute, true)
	stepUpProof, err := oauth.SignProof(holder, "ES256", oauth.ProofClaims{Method: "POST", URI: "https://api.example.com/refunds", AccessToken: boundStepUp})
	if err != nil {
		t.Fatal(err)
	}
	askingPolicy := svc(policyEngine(t, stepUpPolicy), false)

	tests := []struct {
		name string
		svc  *check.Service
		req  *authv3.CheckRequest
	}{
		{"no-credentials", enforce, req("GET", "/orders", read)},
		{"other-scheme", enforce, req("GET", "/orders", read, "authorization", "Basic YTpi")},
		{"malformed-header", enforce, req("GET", "/orders", read, "authorization", "Bearer a b")},
		{"several-authorization-values", enforce, req("GET", "/orders", read, "authorization", bearer(tok("orders:read", "c", nil)), "authorization", "Bearer x")},
		{"token-in-query", enforce, req("GET", "/orders?access_token=abc", read)},
		{"token-too-large", enforce, req("GET", "/orders", read, "authorization", "Bearer "+strings.Repeat("a", 5000))},
		{"expired-token", enforce, req("GET", "/orders", read, "authorization", bearer(expired))},
		{"unknown-issuer", enforce, req("GET", "/orders", read, "authorization", bearer(tok("orders:read", "c", func(c testissuer.Claims) { c["iss"] = "https://evil.example" })))},
		{"scope-claim-wrong-type", enforce, req("GET", "/orders", read, "authorization", bearer(tok("", "c", func(c testissuer.Claims) { c["scope"] = 12345 })))},
		{"missing-scope", enforce, req("POST", "/orders", write, "authorization", bearer(tok("orders:read", "orders-cli", nil)))},
		{"policy-denial", enforce, req("GET", "/admin/users", admin, "authorization", bearer(tok("admin", "orders-cli", nil)))},
		{"policy-error", failing, req("GET", "/orders", read, "authorization", bearer(tok("orders:read", "orders-cli", nil)))},
		{"keys-never-fetched", noKeys, req("GET", "/orders", read, "authorization", bearer(tok("orders:read", "orders-cli", func(c testissuer.Claims) { c["iss"] = unreachableIss })))},
		{"allowed", enforce, req("GET", "/orders/1", read, "authorization", bearer(tok("orders:read", "orders-cli", nil)))},
		// Sender-constrained tokens (RFC 9449, RFC 8705).
		{"dpop-allowed", enforce, req("GET", "/orders/1", read, "authorization", "DPoP "+boundTok, "dpop", proof(holder, "GET", "/orders/1"))},
		{"dpop-malformed-header", enforce, req("GET", "/orders/1", read, "authorization", "DPoP")},
		{"dpop-bound-token-as-bearer", enforce, req("GET", "/orders/1", read, "authorization", bearer(boundTok))},
		{"dpop-proof-of-another-key", enforce, req("GET", "/orders/1", read, "authorization", "DPoP "+boundTok, "dpop", proof(ecKey(t), "GET", "/orders/1"))},
		{"binding-required-plain-bearer", enforce, req("GET", "/orders/1", bindingRequired, "authorization", bearer(tok("orders:read", "orders-cli", nil)))},
		// A route of a virtual host with RFC 9728 metadata: every challenge names the document
		// (§5.1); insufficient_scope still names the scopes; a label that is no plain URL is left out.
		{"metadata-no-credentials", enforce, req("GET", "/orders", withMetadata(read, metadataURL))},
		{"metadata-expired-token", enforce, req("GET", "/orders", withMetadata(read, metadataURL), "authorization", bearer(expired))},
		{"metadata-malformed-header", enforce, req("GET", "/orders", withMetadata(read, metadataURL), "authorization", "Bearer a b")},
		{"metadata-missing-scope", enforce, req("POST", "/orders", withMetadata(write, metadataURL), "authorization", bearer(tok("orders:read", "orders-cli", nil)))},
		{"metadata-keys-never-fetched", noKeys, req("GET", "/orders", withMetadata(read, metadataURL), "authorization", bearer(tok("orders:read", "orders-cli", func(c testissuer.Claims) { c["iss"] = unreachableIss })))},
		{"metadata-not-a-url", enforce, req("GET", "/orders", withMetadata(read, `https://x" error="evil`))},
		// Opaque tokens, checked by introspection: the same answers as for a JWT, and 503 with
		// Retry-After when the issuer can't answer (nothing cached).
		{"introspected-allowed", introspecting, req("GET", "/orders/1", read, "authorization", "Bearer opaque.active.x.y.z")},
		{"introspected-missing-scope", introspecting, req("POST", "/orders", write, "authorization", "Bearer opaque.active.x.y.z")},
		{"introspected-inactive", introspecting, req("GET", "/orders/1", withMetadata(read, metadataURL), "authorization", "Bearer opaque.inactive.x.y.z")},
		{"introspection-unavailable", introspecting, req("GET", "/orders/1", read, "authorization", "Bearer opaque.failing.x.y.z")},
		// policy.bundle before the first good bundle: fail closed, in shadow mode too.
		{"policy-not-loaded", svc(policy.NewPending(policy.Options{}), false), req("GET", "/orders/1", read, "authorization", bearer(tok("orders:read", "orders-cli", nil)))},
		{"shadow-global-policy-not-loaded", svc(policy.NewPending(policy.Options{}), true), req("GET", "/orders/1", read, "authorization", bearer(tok("orders:read", "orders-cli", nil)))},
		// Step-up (RFC 9470): 401 insufficient_user_authentication naming what to ask for.
		{"step-up-acr", enforce, req("POST", "/refunds", acrRoute, "authorization", bearer(signedIn("urn:example:pwd", time.Minute, false)))},
		{"step-up-max-age", enforce, req("POST", "/refunds", ageRoute, "authorization", bearer(signedIn("urn:example:pwd", time.Hour, false)))},
		{"step-up-both", enforce, req("POST", "/refunds", bothRoute, "authorization", bearer(signedIn("urn:example:pwd", time.Hour, false)))},
		{"step-up-dpop", enforce, req("POST", "/refunds", bothRoute, "authorization", "DPoP "+boundStepUp, "dpop", stepUpProof)},
		{"step-up-policy", askingPolicy, req("POST", "/refunds", stepUp(nil), "authorization", bearer(signedIn("urn:example:pwd", time.Minute, false)), "x-amount", "5000")},
		{"step-up-met", enforce, req("POST", "/refunds", bothRoute, "authorization", bearer(signedIn("urn:example:mfa", time.Minute, false)))},
		{"step-up-invalid-route", enforce, req("POST", "/refunds", stepUp(map[string]string{contract.ExtMaxAge: "5m"}), "authorization", bearer(signedIn("urn:example:mfa", time.Minute, false)))},
		// Shadow mode lets policy denials through; token failures are still denied.
		{"shadow-route-policy-denial", enforce, req("POST", "/orders", shadowWrite, "authorization", bearer(tok("orders:read", "orders-cli", nil)))},
		{"shadow-route-expired-token", enforce, req("POST", "/orders", shadowWrite, "authorization", bearer(expired))},
		{"shadow-global-policy-denial", globalShadow, req("POST", "/orders", write, "authorization", bearer(tok("orders:read", "orders-cli", nil)))},
		{"shadow-global-no-credentials", globalShadow, req("POST", "/orders", write)},
		{"shadow-global-policy-error", svc(undefined, true), req("GET", "/orders", read, "authorization", bearer(tok("orders:read", "orders-cli", nil)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.svc.Check(context.Background(), tt.req)
			if err == nil {
				resp, err = check.Decoded(resp)
			}
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "responses", tt.name+".json")
			if *update {
				b, err := stableJSON(resp)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			b, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./extauthz/check -run TestResponses -update)", err)
			}
			want := &authv3.CheckResponse{}
			if err := protojson.Unmarshal(b, want); err != nil {
				t.Fatalf("%s: %v", golden, err)
			}
			if d := cmp.Diff(want, resp, protocmp.Transform()); d != "" {
				t.Errorf("response differs from %s (-want +got); review and run with -update:\n%s", golden, d)
			}
		})
	}
}

// stableJSON is resp as indented JSON. protojson varies its whitespace from build to build on
// purpose; re-indenting it keeps golden files byte-stable, so -update shows only real changes.
func stableJSON(resp *authv3.CheckResponse) ([]byte, error) {
	b, err := protojson.Marshal(resp)
	if err != nil {
		return nil, err
	}
	var compact, out bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		return nil, err
	}
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func policyEngine(t *testing.T, src string) *policy.Engine {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, src)
	eng, err := policy.New(context.Background(), policy.Options{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// unreachableIssuer is a verifier (and its issuer) whose keys were never fetched: its JWKS
// URL refuses connections.
func unreachableIssuer(t *testing.T) (*token.Verifier, string) {
	t.Helper()
	is := testissuer.New(testissuer.NewKey("k1", "ES256"))
	is.Close() // nothing listens there any more
	src, err := jwks.New(jwks.Options{Name: "demo", Issuer: is.Issuer, URL: is.JWKSURL(), RefreshInterval: time.Hour,
		UnknownKIDInterval: time.Second, FetchTimeout: time.Second, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	src.Start(ctx)
	ti := token.Issuer{Name: "demo", Issuer: is.Issuer, Audiences: []string{"orders-api"},
		Algorithms: config.DefaultAlgorithms, ScopeClaims: []string{"scope"}, ClientIDClaims: []string{"client_id"}, Leeway: time.Minute, Keys: src}
	return token.NewVerifier(token.Options{Issuers: []token.Issuer{ti}}), is.Issuer
}

const metadataURL = "https://api.example.com/.well-known/oauth-protected-resource"

// withMetadata is a route's context extensions with the resource_metadata URL added.
func withMetadata(ext map[string]string, url string) map[string]string {
	out := map[string]string{contract.ExtResourceMetadata: url}
	for k, v := range ext {
		out[k] = v
	}
	return out
}

// goldenIntrospection answers introspection by the token's second part: active (orders:read
// for alice via orders-cli), inactive, or failing with 500.
func goldenIntrospection(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch strings.Split(r.FormValue("token"), ".")[1] {
		case "active":
			fmt.Fprintf(w, `{"active":true,"scope":"orders:read","client_id":"orders-cli","sub":"alice","aud":["orders-api"],"exp":%d}`, time.Now().Add(time.Hour).Unix())
		case "inactive":
			fmt.Fprint(w, `{"active":false}`)
		default:
			http.Error(w, "down", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}
