package config

import (
	"path/filepath"
	"testing"
)

// TestIdPRecipesLoad: every example config in examples/idp loads with the config loader as
// written, and its issuer reads its keys by discovery (what docs/idp-recipes.md describes).
func TestIdPRecipesLoad(t *testing.T) {
	t.Chdir("../..") // run from the repository root, as users run them
	files, err := filepath.Glob("examples/idp/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"keycloak.yaml": "https://keycloak.example.com/realms/orders",
		"auth0.yaml":    "https://example-tenant.eu.auth0.com/",
		"okta.yaml":     "https://example.okta.com/oauth2/default",
		"entra-id.yaml": "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0",
	}
	if len(files) != len(want) {
		t.Fatalf("found %v, want the %d recipes", files, len(want))
	}
	for _, f := range files {
		c, err := Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		is := c.Issuers[0]
		if is.Issuer != want[filepath.Base(f)] || !is.Discovery || len(is.Audiences) == 0 || len(is.ScopeClaims) == 0 {
			t.Errorf("%s: issuer %+v", f, is)
		}
		// The built-in policy: the demo API's rules (policies/) are not a recipe's business.
		if c.Policy.Path != "" || c.Policy.Bundle != nil {
			t.Errorf("%s: policy %+v, want the built-in one", f, c.Policy)
		}
	}
}

// TestLocalDemoConfigLoads: compose/authz.local.yaml (what `make run` and the README's
// `scopegate authz --config compose/authz.local.yaml` use) names its files relative to its own
// folder, so it loads from any working directory and finds the repository's policies/,
// dev-certs/ and compose/introspection-secret.
func TestLocalDemoConfigLoads(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ cwd, path string }{
		{root, "compose/authz.local.yaml"},                                // as the docs run it
		{t.TempDir(), filepath.Join(root, "compose", "authz.local.yaml")}, // from anywhere else
	} {
		t.Chdir(tc.cwd)
		c, err := Load(tc.path)
		if err != nil {
			t.Fatalf("from %s: %v", tc.cwd, err)
		}
		abs := func(p string) string {
			if !filepath.IsAbs(p) {
				p = filepath.Join(tc.cwd, p)
			}
			return p
		}
		for _, got := range []struct{ field, path, want string }{
			{"policy.path", c.Policy.Path, filepath.Join(root, "policies")},
			{"tls.cert_file", c.TLS.CertFile, filepath.Join(root, "dev-certs", "authz.crt")},
			{"issuers[0].introspection.client_secret_file", c.Issuers[0].Introspection.ClientSecretFile, filepath.Join(root, "compose", "introspection-secret")},
		} {
			if abs(got.path) != got.want {
				t.Errorf("from %s: %s = %s, want %s", tc.cwd, got.field, got.path, got.want)
			}
		}
	}
}
