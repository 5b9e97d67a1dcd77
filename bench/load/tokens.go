package load

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/scopegate/scopegate/internal/checkreq"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// fixture is the issuer the servers under test trust, and its keys.
type fixture struct {
	is     *testissuer.Issuer
	rs, es *testissuer.Key
	dir    string
}

func newFixture(dir string) *fixture {
	rs := testissuer.NewKey("bench-rs", "RS256")
	es := testissuer.NewKey("bench-es", "ES256")
	return &fixture{is: testissuer.New(rs, es), rs: rs, es: es, dir: dir}
}

func (f *fixture) close() { f.is.Close() }

// writeConfig writes the authz config for a server on addr: the built-in default policy,
// decision log off, at+jwt required, audience orders-api, keys from the issuer's JWKS.
func (f *fixture) writeConfig(addr string) (string, error) {
	return f.write(addr, "authz.yaml", "decision_log:\n  output: \"off\"\n")
}

// writeDefaultConfig writes the shipped default config for a server on addr: the same issuer
// and policy, and every other setting left to its default (the decision log to stdout, every
// allowed decision, include_input), but for drain_delay 0s, which only makes each stop wait.
func (f *fixture) writeDefaultConfig(addr string) (string, error) {
	return f.write(addr, "authz-default.yaml", "drain_delay: 0s\n")
}

func (f *fixture) write(addr, name, extra string) (string, error) {
	cfg := fmt.Sprintf(`# written by scopegate-loadbench
listen: %q
admin: "127.0.0.1:0"
log_level: info
shutdown_timeout: 5s
issuers:
  - name: bench
    issuer: %q
    jwks_uri: %q
    audiences: [orders-api]
    algorithms: [RS256, ES256]
    require_typ: at+jwt
    refresh_interval: 1h
policy:
  path: ""
`, addr, f.is.Issuer, f.is.JWKSURL()) + extra
	path := filepath.Join(f.dir, name)
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// sign signs n tokens in parallel: token i has sub user-<prefix><i>, a unique jti and the
// scope scopes[i % len(scopes)].
func (f *fixture) sign(k *testissuer.Key, prefix string, n int, scopes ...string) []string {
	out := make([]string, n)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				c := f.is.Standard("orders-api", fmt.Sprintf("user-%s%d", prefix, i), scopes[i%len(scopes)], 2*time.Hour)
				c["jti"] = fmt.Sprintf("%s-%d", prefix, i)
				out[i] = testissuer.Sign(k, c, nil)
			}
		})
	}
	wg.Wait()
	return out
}

// coldScopes are the scope sets of the cold tokens: 32 distinct sets, all holding
// orders:read, as a fleet's clients (each with its own grant) would present. A policy decision
// depends on the scopes, so scopegate evaluates the policy once per set and reuses the
// decision for later tokens with the same set (policy.Fields.Shareable); with one set for
// every token the cold case would flatter that reuse.
func coldScopes() []string {
	out := make([]string, 32)
	for i := range out {
		out[i] = fmt.Sprintf("orders:read app:%02d", i)
		if i%2 == 1 {
			out[i] += " profile:read"
		}
	}
	return out
}

// badSignatures derives n distinct tokens with invalid signatures from valid ones by flipping
// one bit of the signature (a different bit for each), so no RSA signing is needed per token.
func badSignatures(valid []string, n int) []string {
	out := make([]string, 0, n)
	for i := 0; len(out) < n; i++ {
		tok := valid[i%len(valid)]
		dot := strings.LastIndexByte(tok, '.')
		sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
		if err != nil {
			panic(err)
		}
		bit := (i / len(valid)) % (len(sig) * 8)
		sig[bit/8] ^= 1 << (bit % 8)
		out = append(out, tok[:dot+1]+base64.RawURLEncoding.EncodeToString(sig))
	}
	return out
}

// envoyRequest is a CheckRequest shaped as Envoy sends it (checkreq, as the tests use):
// lower-cased headers, :path with the query, the route's context extensions.
func envoyRequest(tok string, id int) *authv3.CheckRequest {
	return checkreq.Request{ID: fmt.Sprint(id), Path: "/orders/42?expand=items", Host: "api.example.com", Protocol: "HTTP/2", Source: "10.0.0.7:41234",
		Headers: map[string]string{
			"authorization": "Bearer " + tok, "user-agent": "curl/8.5.0", "accept": "*/*",
			"x-forwarded-proto": "https", "x-request-id": fmt.Sprintf("7f8e5b2c-1d3a-4e5f-9a8b-%012d", id), "x-envoy-expected-rq-timeout-ms": "15000",
		},
		ContextExtensions: map[string]string{contract.ExtRoute: "orders-read", contract.ExtScopes: "orders:read"},
	}.MustBuild()
}

func requests(toks []string) []*authv3.CheckRequest {
	out := make([]*authv3.CheckRequest, len(toks))
	for i, t := range toks {
		out[i] = envoyRequest(t, i)
	}
	return out
}
