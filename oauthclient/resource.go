package oauthclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ResourceMetadata is what a protected resource says about itself (RFC 9728 §2): which
// authorization servers issue its tokens and which scopes it uses.
type ResourceMetadata struct {
	Resource             string   `json:"resource"`
	AuthorizationServers []string `json:"authorization_servers"`
	ScopesSupported      []string `json:"scopes_supported"`
	ResourceName         string   `json:"resource_name"`
}

// maxMetadataBytes bounds a metadata document.
const maxMetadataBytes = 64 << 10

// MetadataURL is where resource's metadata lives (RFC 9728 §3.1): the well-known path
// inserted between the host and the resource's path, a terminating slash removed.
func MetadataURL(resource string) (string, error) {
	u, err := url.Parse(resource)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("api %q: want an http(s) URL without query or fragment", resource)
	}
	return u.Scheme + "://" + u.Host + "/.well-known/oauth-protected-resource" + strings.TrimSuffix(u.EscapedPath(), "/"), nil
}

// DiscoverResource fetches the protected resource metadata of the API at resource and checks
// that the document is about that resource (RFC 9728 §3.3: a document naming another
// resource must not be used) and names an authorization server.
func DiscoverResource(ctx context.Context, hc *http.Client, resource string) (*ResourceMetadata, error) {
	mu, err := MetadataURL(resource)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, mu, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("resource metadata: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("resource metadata %s: status %d", mu, resp.StatusCode)
	}
	var md ResourceMetadata
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxMetadataBytes)).Decode(&md); err != nil {
		return nil, fmt.Errorf("resource metadata %s: %w", mu, err)
	}
	if strings.TrimSuffix(md.Resource, "/") != strings.TrimSuffix(resource, "/") {
		return nil, fmt.Errorf("resource metadata %s: resource %q is not %q", mu, md.Resource, resource)
	}
	if len(md.AuthorizationServers) == 0 {
		return nil, fmt.Errorf("resource metadata %s: %w", mu, errNoAuthorizationServer)
	}
	return &md, nil
}

var errNoAuthorizationServer = errors.New("no authorization_servers")
