package translate

import (
	"time"

	"github.com/scopegate/scopegate/controlplane/config"
)

// Model is one fleet's configuration resolved for Envoy, the only input of the message
// builders: every name assigned (package names), every upstream a route uses found and its
// endpoints parsed, every certificate and CA read and checked, every protected route's
// contract computed. resolve makes it from a validated config; nothing after it reads the
// config or a file, so a builder is a function of the model alone.
type Model struct {
	Fleet string
	// ExtAuthz is the ext_authz filter every listener runs.
	ExtAuthz ExtAuthz
	// Clusters are authz's, then each upstream the fleet's routes use, in file order.
	Clusters []Cluster
	// Listeners are the fleet's, in file order.
	Listeners []Listener
	// Secrets are every SDS secret the clusters and listeners refer to.
	Secrets []Secret
}

// ExtAuthz is how the ext_authz filter calls authz.
type ExtAuthz struct {
	// Cluster is authz's cluster (names.AuthzCluster).
	Cluster                string
	Timeout                time.Duration
	FailureModeAllow       bool
	StatusOnError          int
	IncludePeerCertificate bool
}

// Discovery is how Envoy learns a cluster's endpoints.
type Discovery uint8

const (
	// DiscoveryEDS: every endpoint is an IP address, pushed by EDS.
	DiscoveryEDS Discovery = iota + 1
	// DiscoveryDNS: a host name among the endpoints; they are inline and Envoy resolves them
	// (EDS addresses must be IPs).
	DiscoveryDNS
	// DiscoveryStatic: one Unix socket (authz as a sidecar), nothing to discover.
	DiscoveryStatic
)

// Cluster is an upstream Envoy sends requests to: authz, or an upstream of the file.
type Cluster struct {
	Name           string
	Discovery      Discovery
	ConnectTimeout time.Duration
	// Endpoints are host:port pairs in file order (none with DiscoveryStatic).
	Endpoints []Endpoint
	// Socket is the Unix socket path with DiscoveryStatic.
	Socket string
	// HTTP2 makes the cluster speak HTTP/2 upstream (gRPC: authz).
	HTTP2 bool
	// TLS, when set, makes Envoy call the cluster over TLS (authz.tls).
	TLS *UpstreamTLS
}

// Endpoint is one validated host:port.
type Endpoint struct {
	Host string
	Port uint32
}

// UpstreamTLS is how Envoy verifies authz and what it presents to it.
type UpstreamTLS struct {
	// CASecret is the SDS secret of the CA authz's certificate must chain to.
	CASecret string
	// ClientSecret is the SDS secret of Envoy's client certificate ("": none).
	ClientSecret string
	// ServerName is the SAN required of authz's certificate; a DNS name is also sent as SNI.
	ServerName string
	// ServerIP says ServerName is an IP address: matched as an IP SAN, and no SNI.
	ServerIP bool
}

// Listener is one address Envoy accepts HTTP on, with its route configuration.
type Listener struct {
	Name    string
	Address string
	Port    uint32
	// RouteConfig names the route configuration (RDS) the listener's HTTP connection manager
	// asks for; it is also its statistics prefix.
	RouteConfig  string
	VirtualHosts []VirtualHost
	// TLS, when set, terminates TLS (nil: plain HTTP).
	TLS *DownstreamTLS
}

// DownstreamTLS is a listener's TLS: its certificate and, optionally, client certificates.
type DownstreamTLS struct {
	// CertSecret is the SDS secret of the listener's certificate and key.
	CertSecret string
	// ClientCASecret is the SDS secret of the CA client certificates must chain to ("": none
	// asked for).
	ClientCASecret string
	// RequireClientCertificate refuses a handshake without one (with ClientCASecret).
	RequireClientCertificate bool
}

// VirtualHost groups routes by Host header.
type VirtualHost struct {
	Name    string
	Domains []string
	// Metadata, when set, is the RFC 9728 document route, answered by Envoy before Routes.
	Metadata *MetadataRoute
	Routes   []Route
}

// MetadataRoute answers a virtual host's protected resource metadata document.
type MetadataRoute struct {
	// Name is names.MetadataRoute of the virtual host.
	Name string
	// Path is the document's exact path (RFC 9728 §3.1).
	Path         string
	Document     []byte
	CacheControl string
}

// Route is one matched request class, sent to one cluster.
type Route struct {
	Name    string
	Match   RouteMatch
	Cluster string
	// Timeout is the route's request timeout (the route's, else its upstream's).
	Timeout time.Duration
	// StripHeaders are removed from the request: on a public route, the identity headers
	// only ext_authz may set.
	StripHeaders []string
	// Extensions are the route contract authz receives as context extensions
	// (config.VirtualHost.RouteExtensions); nil on a public route, where ext_authz is disabled.
	Extensions map[string]string
}

// RouteMatch is a route's match as Envoy's: the path (config.Match.PathMatch says how), the
// methods and the headers, all of which must hold. The kinds are config's own (PathKind,
// StringKind): one decision, which authz's route table (mesh mode) matches by too.
type RouteMatch struct {
	PathKind config.PathKind
	Path     string
	// IgnoreCase matches prefix and path without regard to ASCII case.
	IgnoreCase bool
	Methods    []string
	Headers    []HeaderMatch
}

// HeaderMatch is one header matcher (config.HeaderMatch.Kind says how it compares).
type HeaderMatch struct {
	Name       string
	Kind       config.StringKind
	Value      string
	IgnoreCase bool
	Invert     bool
}

// Secret is one SDS secret: a certificate with its key, or a CA bundle, both read and checked.
type Secret struct {
	Name string
	// Certificate is a PEM certificate chain and its key (a listener's, Envoy's for authz).
	Certificate *Certificate
	// TrustedCA is a PEM CA bundle (a listener's client CA, authz's CA); set when Certificate
	// is not.
	TrustedCA []byte
}

// Certificate is a PEM certificate chain and its private key, checked to match.
type Certificate struct {
	Chain []byte
	Key   []byte
}
