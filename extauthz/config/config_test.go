package config

import (
	"strings"
	"testing"
	"time"
)

const minimal = `
issuers:
  - name: demo
    issuer: "http://localhost:9400"
    jwks_uri: "http://localhost:9400/keys"
    audiences: [orders-api]
`

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	is := c.Issuers[0]
	if c.Listen != ":9191" || c.Admin != ":9092" || *c.TokenCache.MaxEntries != 100000 || c.Bearer.MaxTokenBytes != 8192 ||
		c.Policy.Query != "data.scopegate.authz.decision" || !*c.Policy.RunTests || c.Policy.ErrorStatus != 500 ||
		is.Leeway != 30*time.Second || is.RefreshInterval != 15*time.Minute || strings.Join(is.Algorithms, ",") != "RS256,ES256,EdDSA,PS256" ||
		strings.Join(is.ScopeClaims, ",") != "scope,scp" || c.Headers.Subject != "x-scopegate-subject" || *c.DecisionLog.SampleRate != 1 {
		t.Fatalf("defaults: %+v %+v", c, is)
	}
}

// An explicit 0 turns the token cache off, as documented; it is not taken for "unset".
func TestTokenCacheOff(t *testing.T) {
	c, err := Parse([]byte(minimal + "token_cache: {max_entries: 0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if *c.TokenCache.MaxEntries != 0 {
		t.Fatalf("max_entries = %d, want 0 (off)", *c.TokenCache.MaxEntries)
	}
	c, err = Parse([]byte(minimal + "token_cache: {max_entries: 500}\n"))
	if err != nil || *c.TokenCache.MaxEntries != 500 {
		t.Fatalf("max_entries 500: %v %v", c.TokenCache.MaxEntries, err)
	}
}

// An explicit leeway of 0 is strict, not the default.
func TestZeroLeeway(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(minimal, "audiences", "leeway: 0s\n    audiences", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuers[0].Leeway != 0 {
		t.Fatalf("leeway = %s, want 0", c.Issuers[0].Leeway)
	}
}

func TestBadValuesNameTheField(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown field", minimal + "listn: ':1'\n", "listn: line 7: field listn not found"},
		{"no issuers", "listen: ':1'\n", "issuers: at least one issuer"},
		{"bad listen", minimal + "listen: '9191'\n", `listen: "9191" is not host:port`},
		{"HMAC algorithm", strings.Replace(minimal, "audiences", "algorithms: [HS256]\n    audiences", 1), `issuers[0] (demo).algorithms: "HS256" is not allowed`},
		{"alg none", strings.Replace(minimal, "audiences", "algorithms: [none]\n    audiences", 1), `"none" is not allowed`},
		{"no audience", strings.Replace(minimal, "    audiences: [orders-api]\n", "", 1), "issuers[0] (demo).audiences: at least one audience"},
		{"two key sources", strings.Replace(minimal, "audiences", "jwks_file: x.json\n    audiences", 1), "exactly one of discovery"},
		{"no key source", strings.Replace(minimal, `    jwks_uri: "http://localhost:9400/keys"`+"\n", "", 1), "exactly one of discovery"},
		{"jwks_uri not http", strings.Replace(minimal, "http://localhost:9400/keys", "file:///etc/keys", 1), "jwks_uri: want an http(s) URL"},
		{"duration", strings.Replace(minimal, "audiences", "leeway: ten\n    audiences", 1), "issuers[0].leeway: line 6: cannot unmarshal `ten`: want a duration such as 30s"},
		{"leeway too large", strings.Replace(minimal, "audiences", "leeway: 1h\n    audiences", 1), "leeway: 1h0m0s is out of range"},
		{"duplicate issuer", minimal + `  - name: demo
    issuer: "http://localhost:9400"
    jwks_uri: "http://localhost:9400/keys"
    audiences: [a]
`, `duplicate issuer name "demo"`},
		{"header case", minimal + "headers: {subject: X-Sub}\n", `headers.subject: "X-Sub" must be a lower-case header name`},
		{"token limit", minimal + "bearer: {max_token_bytes: 10}\n", "bearer.max_token_bytes: 10 is out of range"},
		{"query", minimal + "policy: {query: allow}\n", `policy.query: "allow" must be a data reference`},
		{"policy path", minimal + "policy: {path: /nonexistent/policies}\n", "policy.path:"},
		{"error status", minimal + "policy: {error_status: 200}\n", "policy.error_status: 200"},
		{"signing without a key", minimal + "policy: {path: /, signing: {key_id: k}}\n", "policy.signing.public_key_file: required"},
		{"signing key missing", minimal + "policy: {path: /, signing: {public_key_file: /nonexistent/bundle.pem}}\n", "policy.signing.public_key_file: stat /nonexistent/bundle.pem"},
		{"signing the built-in policy", minimal + "policy: {signing: {public_key_file: /}}\n", "policy.signing: needs policy.path"},
		{"signing unknown field", minimal + "policy: {path: /, signing: {public_key: x}}\n", "field public_key not found"},
		{"sample rate", minimal + "decision_log: {sample_rate: 2}\n", "decision_log.sample_rate: 2 is out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSigningDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal + "policy: {path: /, signing: {public_key_file: /, scope: prod}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Policy.Signing; s == nil || s.KeyID != "default" || s.Scope != "prod" || s.PublicKeyFile != "/" {
		t.Fatalf("signing = %+v, want key_id default, scope prod", s)
	}
	if c, err = Parse([]byte(minimal)); err != nil || c.Policy.Signing != nil {
		t.Fatalf("no signing block: %+v %v", c.Policy.Signing, err)
	}
}
