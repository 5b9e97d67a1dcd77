package oauthclient

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMetadataURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.example.com":           "https://api.example.com/.well-known/oauth-protected-resource",
		"https://api.example.com/":          "https://api.example.com/.well-known/oauth-protected-resource",
		"https://api.example.com:8443/v1/x": "https://api.example.com:8443/.well-known/oauth-protected-resource/v1/x",
	} {
		if got, err := MetadataURL(in); err != nil || got != want {
			t.Errorf("MetadataURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"api.example.com", "ftp://x", "https://x/?q=1", "https://x/#f"} {
		if _, err := MetadataURL(bad); err == nil {
			t.Errorf("MetadataURL(%q) accepted", bad)
		}
	}
}

// DiscoverResource reads the document at the §3.1 URL and refuses one about another resource
// or naming no authorization server.
func TestDiscoverResource(t *testing.T) {
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/oauth-protected-resource/v1" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	api := srv.URL + "/v1"
	body = fmt.Sprintf(`{"resource":%q,"authorization_servers":["https://idp.example/"],"scopes_supported":["a","b"]}`, api)
	md, err := DiscoverResource(context.Background(), srv.Client(), api)
	if err != nil || md.AuthorizationServers[0] != "https://idp.example/" || strings.Join(md.ScopesSupported, " ") != "a b" {
		t.Fatalf("DiscoverResource = %+v, %v", md, err)
	}
	for name, tc := range map[string]struct{ body, want string }{
		"another resource": {`{"resource":"https://evil.example","authorization_servers":["https://idp.example/"]}`, `resource "https://evil.example" is not`},
		"no servers":       {fmt.Sprintf(`{"resource":%q}`, api), "no authorization_servers"},
		"not JSON":         {`<html>`, "invalid character"},
	} {
		body = tc.body
		if _, err := DiscoverResource(context.Background(), srv.Client(), api); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", name, err, tc.want)
		}
	}
	if _, err := DiscoverResource(context.Background(), srv.Client(), srv.URL+"/other"); err == nil || !strings.Contains(err.Error(), "status 404") {
		t.Errorf("no document: %v", err)
	}
}
