package config

import (
	"strings"
	"testing"
	"time"
)

func TestPolicyBundle(t *testing.T) {
	c, err := Parse([]byte(minimal + "policy:\n  bundle: {url: https://bundles.example.com/scopegate/bundle.tar.gz}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Policy.Bundle; b.Polling.MinDelay != 60*time.Second || b.Polling.MaxDelay != 120*time.Second || b.Signing != nil {
		t.Fatalf("defaults: %+v", b)
	}
	// policy.bundle.signing has policy.signing's fields and defaults.
	c, err = Parse([]byte(minimal + "policy:\n  bundle: {url: https://x/b, signing: {public_key_file: /dev/null}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Policy.Bundle.Signing; s.KeyID != "default" {
		t.Fatalf("bundle signing key_id = %q, want %q as policy.signing's", s.KeyID, DefaultKeyID)
	}
	const bundle = minimal + "policy:\n  bundle:\n    url: https://bundles.example.com/b.tar.gz\n"
	tests := []struct{ name, yaml, want string }{
		{"url", minimal + "policy: {bundle: {url: 'ftp://x/b'}}\n", `policy.bundle.url: want an http(s) URL with a host, got "ftp://x/b"`},
		{"url shown without its query", minimal + "policy: {bundle: {url: 'ftp://x/b?sig=presigned-secret'}}\n", `policy.bundle.url: want an http(s) URL with a host, got "ftp://x/b"`},
		{"path and bundle", minimal + "policy: {path: /tmp, bundle: {url: 'https://x/b'}}\n", "policy.path and policy.bundle are exclusive"},
		{"watch", minimal + "policy: {watch: true, bundle: {url: 'https://x/b'}}\n", "policy.watch: not used with policy.bundle"},
		{"min delay", bundle + "    polling: {min_delay: 500ms, max_delay: 2s}\n", "policy.bundle.polling.min_delay: 500ms: want whole seconds"},
		{"max below min", bundle + "    polling: {min_delay: 10s, max_delay: 5s}\n", "policy.bundle.polling.max_delay: 5s: want whole seconds, at least min_delay"},
		{"unknown field", bundle + "    signing: {public_key: x}\n", "field public_key not found"},
		{"signing key file", bundle + "    signing: {public_key_file: /nonexistent.pem, key_id: global}\n", "policy.bundle.signing.public_key_file: stat /nonexistent.pem"},
		{"token file", bundle + "    credentials: {bearer_token_file: /nonexistent}\n", "policy.bundle.credentials.bearer_token_file: stat /nonexistent"},
		{"cert without key", bundle + "    credentials: {client_cert_file: /dev/null}\n", "client_cert_file and client_key_file go together"},
		{"two credentials", bundle + "    credentials: {bearer_token_file: /dev/null, client_cert_file: /dev/null, client_key_file: /dev/null}\n", "not both"},
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
