// Package names is every name scopegate gives an Envoy resource, and the few names inside
// one that others must find (the ext_authz filter, the resource metadata route). translate
// assigns them to its model; the config's validation refuses a user's name that would take a
// reserved one; authz's own route table (mesh mode) names the metadata route as Envoy's does.
//
// It is a package of its own, not a file of translate, because the config package refuses
// these names and translate imports the config: a leaf both can import keeps one spelling.
// It imports nothing of Envoy's API but the well-known filter name.
package names

import "github.com/envoyproxy/go-control-plane/pkg/wellknown"

// AuthzCluster is the cluster the ext_authz filter calls; no upstream may take this name.
const AuthzCluster = "scopegate_authz"

// SDS secrets of the Envoy → authz hop: the CA that verifies authz, and Envoy's client
// certificate.
const (
	AuthzCASecret     = AuthzCluster + ".ca"
	AuthzClientSecret = AuthzCluster + ".client"
)

// ExtAuthzFilter names the ext_authz HTTP filter; per-route configs are keyed by it.
const ExtAuthzFilter = wellknown.HTTPExternalAuthorization

// Cluster is the cluster (and the endpoints, with EDS) of the upstream called upstream.
func Cluster(upstream string) string { return upstream }

// Listener is the listener of the config's listener called listener.
func Listener(listener string) string { return listener }

// RouteConfig is the route configuration (RDS) of a listener, also its HTTP statistics
// prefix.
func RouteConfig(listener string) string { return listener }

// ListenerSecret is the SDS secret holding a listener's certificate and key.
func ListenerSecret(listener string) string { return listener + ".tls" }

// ClientCASecret is the SDS secret holding a listener's client CA.
func ClientCASecret(listener string) string { return listener + ".client-ca" }

// MetadataRoute names the route that answers a virtual host's RFC 9728 resource metadata
// document, in Envoy's route configuration and in authz's route table; no route of the
// listener may take this name.
func MetadataRoute(virtualHost string) string { return virtualHost + ".resource-metadata" }
