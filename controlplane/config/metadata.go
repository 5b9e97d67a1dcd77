package config

import (
	"encoding/json"
	"slices"
	"sort"
	"strconv"

	"github.com/scopegate/scopegate/internal/contract"
)

// resourceMetadata is the RFC 9728 §2 document. Field order is the RFC's, so the body (and
// the golden files) are stable.
type resourceMetadata struct {
	Resource                              string   `json:"resource"`
	AuthorizationServers                  []string `json:"authorization_servers"`
	JWKSURI                               string   `json:"jwks_uri,omitempty"`
	ScopesSupported                       []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported                []string `json:"bearer_methods_supported"`
	ResourceSigningAlgValuesSupported     []string `json:"resource_signing_alg_values_supported,omitempty"`
	ResourceName                          string   `json:"resource_name,omitempty"`
	ResourceDocumentation                 string   `json:"resource_documentation,omitempty"`
	ResourcePolicyURI                     string   `json:"resource_policy_uri,omitempty"`
	ResourceTOSURI                        string   `json:"resource_tos_uri,omitempty"`
	TLSClientCertificateBoundAccessTokens bool     `json:"tls_client_certificate_bound_access_tokens,omitempty"`
	AuthorizationDetailsTypesSupported    []string `json:"authorization_details_types_supported,omitempty"`
	DPoPSigningAlgValuesSupported         []string `json:"dpop_signing_alg_values_supported,omitempty"`
	// ACRValuesSupported is not an RFC 9728 §2 member (the RFC allows more): it names, as
	// OpenID Connect Discovery's member of the same name does for a provider, the acr values
	// the resource's routes accept (RFC 9470), so a client can ask for one up front.
	ACRValuesSupported []string `json:"acr_values_supported,omitempty"`
}

// MetadataDocument is the JSON document served for vh (which must have resource_metadata), by
// Envoy (our control plane's direct response) or by authz (mesh mode): scopes_supported is
// every scope a protected route of vh requires, sorted, acr_values_supported every acr value
// a route accepts, sorted; bearer tokens are accepted in the Authorization header only
// (RFC 6750 §2.1).
func (vh *VirtualHost) MetadataDocument() []byte {
	m := vh.ResourceMetadata
	var scopes, acrs []string
	for _, r := range vh.Routes {
		if !r.Public {
			scopes = append(scopes, r.Scopes...)
			acrs = append(acrs, r.ACRValues...)
		}
	}
	scopes, acrs = sortedSet(scopes), sortedSet(acrs)
	doc := resourceMetadata{
		Resource:                              m.Resource,
		AuthorizationServers:                  m.AuthorizationServers,
		JWKSURI:                               m.JWKSURI,
		ScopesSupported:                       scopes,
		BearerMethodsSupported:                []string{"header"},
		ResourceSigningAlgValuesSupported:     m.ResourceSigningAlgValuesSupported,
		ResourceName:                          m.ResourceName,
		ResourceDocumentation:                 m.ResourceDocumentation,
		ResourcePolicyURI:                     m.ResourcePolicyURI,
		ResourceTOSURI:                        m.ResourceTOSURI,
		TLSClientCertificateBoundAccessTokens: m.TLSClientCertificateBoundAccessTokens,
		AuthorizationDetailsTypesSupported:    m.AuthorizationDetailsTypesSupported,
		DPoPSigningAlgValuesSupported:         m.DPoPSigningAlgValuesSupported,
		ACRValuesSupported:                    acrs,
	}
	if doc.DPoPSigningAlgValuesSupported == nil {
		doc.DPoPSigningAlgValuesSupported = contract.DPoPAlgorithms() // authz accepts DPoP by default
	}
	b, _ := json.Marshal(doc) // strings and string slices only: cannot fail
	return b
}

// sortedSet is xs sorted, without repeats.
func sortedSet(xs []string) []string {
	sort.Strings(xs)
	return slices.Compact(xs)
}

// CacheControl is the document's Cache-Control header value.
func (m *ResourceMetadata) CacheControl() string {
	return "public, max-age=" + strconv.Itoa(int(m.CacheMaxAge.Seconds()))
}
