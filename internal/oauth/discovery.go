package oauth

// OpenID Connect discovery (OpenID Connect Discovery §4): an issuer's metadata document, for
// the endpoints scopegate needs of it: jwks_uri (token verification) and
// introspection_endpoint (opaque tokens).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxDiscoveryBytes bounds the document: a larger one is refused rather than read.
const maxDiscoveryBytes = 1 << 20

// Discovery is the part of the metadata scopegate reads.
type Discovery struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
}

// FetchDiscovery reads {issuer}/.well-known/openid-configuration with client, within timeout. The
// document's issuer must be the configured one exactly (§4.3): a document naming another is
// refused. Errors name the URL and the cause.
func FetchDiscovery(ctx context.Context, client *http.Client, issuer string, timeout time.Duration) (*Discovery, string, error) {
	u := DiscoveryURL(issuer)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, u, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, u, fmt.Errorf("discovery %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, u, fmt.Errorf("discovery %s: status %d", u, resp.StatusCode)
	}
	var doc Discovery
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDiscoveryBytes)).Decode(&doc); err != nil {
		return nil, u, fmt.Errorf("discovery %s: %w", u, err)
	}
	if doc.Issuer != issuer {
		return nil, u, &IssuerMismatchError{URL: u, Got: doc.Issuer, Want: issuer}
	}
	return &doc, u, nil
}

// DiscoveryURL is the discovery document's address for issuer.
func DiscoveryURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}

// IssuerMismatchError is a discovery document naming another issuer than the configured one.
// It is permanent: asking again will not change the answer until the configuration or the
// IdP is fixed, so callers back off to their longest wait and say it once.
type IssuerMismatchError struct {
	URL       string
	Got, Want string
}

func (e *IssuerMismatchError) Error() string {
	return fmt.Sprintf("discovery %s: issuer %q is not the configured %q (issuers are compared exactly: set issuers[].issuer to the IdP's, or fix the IdP's)", e.URL, e.Got, e.Want)
}

// Permanent marks the error for internal/backoff.
func (e *IssuerMismatchError) Permanent() bool { return true }

// HTTPURL reports whether s is an absolute http(s) URL with a host: what an endpoint named in
// the document must be.
func HTTPURL(s string) bool {
	p, err := url.Parse(s)
	return err == nil && (p.Scheme == "https" || p.Scheme == "http") && p.Host != ""
}
