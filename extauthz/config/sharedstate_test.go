package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSharedStateDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal + "shared_state:\n  redis:\n    addresses: [\"valkey:6379\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	ss := c.SharedState
	if ss.OnUnavailable != "fail_closed" || ss.Timeout != 100*time.Millisecond || ss.Redis.KeyPrefix != "scopegate:" ||
		ss.Redis.DialTimeout != time.Second || ss.Redis.DB != 0 {
		t.Fatalf("defaults: %+v %+v", ss, ss.Redis)
	}
	if c, _ := Parse([]byte(minimal)); c.SharedState != nil {
		t.Fatal("shared_state set without being configured")
	}
}

// Every bad shared_state field is named in the error.
func TestSharedStateValidation(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	short, good, empty := write("short", "tooshort"), write("key", strings.Repeat("k", 32)+"\n"), write("empty", "\n")
	introspecting := strings.Replace(minimal, "audiences: [orders-api]", `audiences: [orders-api]
    introspection:
      endpoint: "http://localhost:9400/introspect"
      client_id: api
      client_secret_file: `+good, 1)
	for _, tc := range []struct{ name, base, block, want string }{
		{"no redis", minimal, "shared_state: {on_unavailable: local}", "shared_state.redis: required"},
		{"no addresses", minimal, "shared_state: {redis: {addresses: []}}", "shared_state.redis.addresses"},
		{"not host:port", minimal, `shared_state: {redis: {addresses: ["valkey"]}}`, `shared_state.redis.addresses: "valkey" is not host:port`},
		{"unix and tcp", minimal, `shared_state: {redis: {addresses: ["unix:///run/v.sock", "a:1"]}}`, "must be the only address"},
		{"cluster db", minimal, `shared_state: {redis: {addresses: ["a:1", "b:1"], db: 2}}`, "shared_state.redis.db: 2: a Redis Cluster"},
		{"negative db", minimal, `shared_state: {redis: {addresses: ["a:1"], db: -1}}`, "shared_state.redis.db"},
		{"brace prefix", minimal, `shared_state: {redis: {addresses: ["a:1"], key_prefix: "a{b}"}}`, "shared_state.redis.key_prefix"},
		{"dial timeout", minimal, `shared_state: {redis: {addresses: ["a:1"], dial_timeout: 1h}}`, "shared_state.redis.dial_timeout"},
		{"timeout", minimal, `shared_state: {redis: {addresses: ["a:1"]}, timeout: 10s}`, "shared_state.timeout"},
		{"mode", minimal, `shared_state: {redis: {addresses: ["a:1"]}, on_unavailable: open}`, `shared_state.on_unavailable: "open"`},
		{"password file missing", minimal, `shared_state: {redis: {addresses: ["a:1"], password_file: /nonexistent/pw}}`, "shared_state.redis.password_file"},
		{"password file empty", minimal, `shared_state: {redis: {addresses: ["a:1"], password_file: ` + empty + `}}`, "shared_state.redis.password_file"},
		{"username alone", minimal, `shared_state: {redis: {addresses: ["a:1"], username: u}}`, "shared_state.redis.username"},
		{"cert without key", minimal, `shared_state: {redis: {addresses: ["a:1"], tls: {cert_file: ` + good + `}}}`, "cert_file and key_file go together"},
		{"ca missing", minimal, `shared_state: {redis: {addresses: ["a:1"], tls: {ca_file: /nonexistent/ca}}}`, "shared_state.redis.tls.ca_file"},
		{"short key", minimal, `shared_state: {redis: {addresses: ["a:1"]}, key_file: ` + short + `}`, "shared_state.key_file"},
		{"key needed", introspecting, `shared_state: {redis: {addresses: ["a:1"]}}`, "shared_state.key_file: required when an issuer uses introspection"},
		{"unknown field", minimal, `shared_state: {redis: {addresses: ["a:1"], adresses: ["b:1"]}}`, "adresses"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.base + tc.block + "\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	ok := introspecting + `shared_state:
  redis: {addresses: ["10.0.0.1:6379", "10.0.0.2:6379"], username: scopegate, password_file: ` + good + `, tls: {ca_file: ` + good + `, server_name: valkey}}
  on_unavailable: local
  key_file: ` + good + "\n"
	if _, err := Parse([]byte(ok)); err != nil {
		t.Fatalf("a good shared_state: %v", err)
	}
}
