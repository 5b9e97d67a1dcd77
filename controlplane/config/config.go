// Package config is the control plane's declarative file: its model, defaults, loading and
// validation. A Config that passes Validate is safe to translate. Nothing here knows about
// Envoy: the only Envoy names it sees are those controlplane/translate/names reserves, which
// Validate refuses as the names of upstreams and routes.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/scopegate/scopegate/internal/certreload"
	"github.com/scopegate/scopegate/internal/configcheck"
	"github.com/scopegate/scopegate/internal/yamlfile"

	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/tracing"
)

// Defaults applied when the file leaves a field out.
const (
	DefaultListen         = ":18000"
	DefaultAdmin          = ":18001"
	DefaultAuthzTimeout   = 250 * time.Millisecond
	DefaultStatusOnError  = 503
	DefaultUpstreamTimout = 15 * time.Second
	DefaultConnectTimeout = 2 * time.Second
)

// Config is the whole file.
type Config struct {
	// Listen is the gRPC address the ADS server binds (SotW and delta on the same port).
	Listen string `yaml:"listen"`
	// Admin is the HTTP address of /healthz, /readyz, /metrics and /status.
	Admin string `yaml:"admin"`
	// TLS serves ADS over TLS; with client_ca_file, mutual TLS with each Envoy's certificate
	// bound to its fleet.
	TLS *ServerTLS `yaml:"tls"`
	// InsecurePlaintextSecrets allows pushing private keys over an ADS server without tls
	// (local development only).
	InsecurePlaintextSecrets bool `yaml:"insecure_plaintext_secrets"`
	// Authz is the scopegate authz service Envoy's ext_authz filter calls.
	Authz Authz `yaml:"authz"`
	// Fleets are groups of Envoys sharing one configuration, selected by node.cluster.
	Fleets []Fleet `yaml:"fleets"`
	// Upstreams are the services routes send traffic to.
	Upstreams []Upstream `yaml:"upstreams"`
	// Tracing is OpenTelemetry for reloads and pushes (off unless tracing.otlp_endpoint is
	// set; read at start-up only).
	Tracing tracing.Config `yaml:"tracing"`
}

// Authz configures the ext_authz filter and the cluster it calls.
type Authz struct {
	// Address is host:port of the authz gRPC service, or unix:///path for a sidecar.
	Address string `yaml:"address"`
	// Timeout bounds each Check call.
	Timeout time.Duration `yaml:"timeout"`
	// FailureModeAllow lets requests through when the authz service fails (default: fail closed).
	FailureModeAllow bool `yaml:"failure_mode_allow"`
	// StatusOnError is the HTTP status returned when the authz service fails and failure mode denies.
	StatusOnError int `yaml:"status_on_error"`
	// IncludePeerCertificate sends the client certificate in the CheckRequest (default true).
	IncludePeerCertificate bool `yaml:"include_peer_certificate"`
	// ConnectTimeout bounds connection setup to the authz service.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// TLS makes Envoy call the authz service over (mutual) TLS.
	TLS *AuthzTLS `yaml:"tls"`
	// IdentityHeaders are the headers the authz service sets on allowed requests. Public routes
	// never reach it, so Envoy strips these names from their requests: a client can't hand
	// the upstream an identity of its own choosing.
	IdentityHeaders []string `yaml:"identity_headers"`
}

// UnixPrefix marks an authz address that is a Unix socket (unix:///path): Envoy and authz
// share a pod or host, and the socket's file mode guards it.
const UnixPrefix = "unix://"

// SocketPath is the Unix socket path when Address is unix:///path.
func (a Authz) SocketPath() (string, bool) { return strings.CutPrefix(a.Address, UnixPrefix) }

// ServerTLS is the ADS server's certificate and, with ClientCAFile, the CA Envoys'
// certificates must chain to.
type ServerTLS struct {
	certreload.Files `yaml:",inline"`
	// TrustDomain is the SPIFFE trust domain of Envoy identities: with client_ca_file, an
	// Envoy's certificate must carry the URI SAN spiffe://<trust_domain>/fleet/<node.cluster>.
	TrustDomain string `yaml:"trust_domain"`
}

// AuthzTLS is how Envoy reaches the authz service over TLS. The files are read by the
// control plane and pushed to Envoy by SDS, so a rotation on disk is an SDS push.
type AuthzTLS struct {
	// CAFile verifies the authz service's certificate.
	CAFile string `yaml:"ca_file"`
	// ServerName is the SNI sent and the DNS SAN required of the authz certificate (default:
	// the host of authz.address; an IP address is then matched as an IP SAN).
	ServerName string `yaml:"server_name"`
	// CertFile and KeyFile are Envoy's client certificate for authz (optional together).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Fleet is one group of Envoys.
type Fleet struct {
	Name      string     `yaml:"name"`
	Listeners []Listener `yaml:"listeners"`
	// AuthzTLS, when set, is this fleet's own client certificate for authz, pushed to this
	// fleet only instead of authz.tls's (which every fleet receives otherwise).
	AuthzTLS *FleetAuthzTLS `yaml:"authz_tls"`
}

// FleetAuthzTLS is one fleet's client certificate and key for the Envoy → authz hop (the CA
// and server name stay authz.tls's).
type FleetAuthzTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Listener is one address Envoy accepts HTTP on.
type Listener struct {
	Name         string        `yaml:"name"`
	Address      string        `yaml:"address"`
	Port         int           `yaml:"port"`
	TLS          *TLS          `yaml:"tls"`
	VirtualHosts []VirtualHost `yaml:"virtual_hosts"`
}

// TLS names the certificate chain and private key files (PEM) of an HTTPS listener.
// The control plane reads them and serves them to Envoy as an SDS secret.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile makes the listener ask clients for a certificate signed by this CA (for
	// certificate-bound tokens, RFC 8705): Envoy verifies it and forwards it to authz.
	ClientCAFile string `yaml:"client_ca_file"`
	// RequireClientCertificate refuses the handshake without a client certificate (with
	// client_ca_file); otherwise one is requested but optional.
	RequireClientCertificate bool `yaml:"require_client_certificate"`
}

// Enabled reports whether the listener terminates TLS.
func (t *TLS) Enabled() bool { return t != nil && (t.CertFile != "" || t.KeyFile != "") }

// VirtualHost groups routes by Host header.
type VirtualHost struct {
	Name    string   `yaml:"name"`
	Domains []string `yaml:"domains"`
	Routes  []Route  `yaml:"routes"`
	// ResourceMetadata, when set, publishes the virtual host's RFC 9728 protected resource
	// metadata (answered by Envoy itself) and points every 401 challenge at it.
	ResourceMetadata *ResourceMetadata `yaml:"resource_metadata"`
}

// ResourceMetadata is the configured part of an RFC 9728 §2 protected resource metadata
// document. scopes_supported (from the routes) and bearer_methods_supported (["header"]) are
// computed by the control plane, never configured.
type ResourceMetadata struct {
	// Resource is the protected resource's identifier: an https URL without query or fragment.
	Resource string `yaml:"resource"`
	// AuthorizationServers are issuer identifiers of the authorization servers this API trusts.
	AuthorizationServers []string `yaml:"authorization_servers"`
	// Optional RFC 9728 §2 members, copied into the document as given.
	JWKSURI                               string   `yaml:"jwks_uri"`
	ResourceName                          string   `yaml:"resource_name"`
	ResourceDocumentation                 string   `yaml:"resource_documentation"`
	ResourcePolicyURI                     string   `yaml:"resource_policy_uri"`
	ResourceTOSURI                        string   `yaml:"resource_tos_uri"`
	ResourceSigningAlgValuesSupported     []string `yaml:"resource_signing_alg_values_supported"`
	TLSClientCertificateBoundAccessTokens bool     `yaml:"tls_client_certificate_bound_access_tokens"`
	AuthorizationDetailsTypesSupported    []string `yaml:"authorization_details_types_supported"`
	// DPoPSigningAlgValuesSupported are the DPoP proof algorithms the API accepts (default:
	// scopegate authz's default dpop_algorithms; keep the two in step when you change one).
	DPoPSigningAlgValuesSupported []string `yaml:"dpop_signing_alg_values_supported"`
	// CacheMaxAge is the document's Cache-Control max-age (default 1h).
	CacheMaxAge time.Duration `yaml:"cache_max_age"`
}

// DefaultMetadataMaxAge is how long clients and caches may keep a metadata document.
const DefaultMetadataMaxAge = time.Hour

// WellKnownResourcePath is RFC 9728 §3's well-known path component.
const WellKnownResourcePath = "/.well-known/oauth-protected-resource"

// DocumentPath is the path Envoy answers the document on (RFC 9728 §3.1): the well-known
// component inserted between the host and the resource's path, a terminating slash removed.
// Resource must have passed Validate.
func (m *ResourceMetadata) DocumentPath() string {
	u, err := url.Parse(m.Resource)
	if err != nil {
		return WellKnownResourcePath
	}
	return WellKnownResourcePath + strings.TrimSuffix(u.EscapedPath(), "/")
}

// DocumentURL is the document's absolute URL, sent in 401 challenges (RFC 9728 §5.1).
func (m *ResourceMetadata) DocumentURL() string {
	u, err := url.Parse(m.Resource)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host + m.DocumentPath()
}

// Route is one matched request class, sent to one upstream.
type Route struct {
	Name     string `yaml:"name"`
	Match    Match  `yaml:"match"`
	Upstream string `yaml:"upstream"`
	// Scopes are the OAuth scopes the policy requires (sent as context_extensions "scopes").
	Scopes []string `yaml:"scopes"`
	// Public disables ext_authz on the route.
	Public bool `yaml:"public"`
	// Mode is "enforce" (default) or "shadow" (the policy logs its decision and allows).
	Mode string `yaml:"mode"`
	// Timeout overrides the upstream's request timeout for this route (0: the upstream's).
	Timeout time.Duration `yaml:"timeout"`
	// Binding "required" refuses plain bearer tokens on the route: only sender-constrained
	// ones (DPoP, RFC 9449, or certificate-bound, RFC 8705) pass. Empty: any.
	Binding string `yaml:"binding"`
	// ACRValues are the authentication context classes the route accepts (RFC 9470): a token
	// whose acr is not one of them gets 401 insufficient_user_authentication naming them
	// (sent as context_extensions "acr_values", space-separated). Empty: any.
	ACRValues []string `yaml:"acr_values"`
	// MaxAge is how long ago the user may have authenticated (the token's auth_time, with the
	// issuer's leeway); older gets 401 insufficient_user_authentication with max_age (sent as
	// context_extensions "max_age", in seconds). 0: any.
	MaxAge time.Duration `yaml:"max_age"`
}

// Match selects requests by path and, optionally, method and headers. Envoy (and authz's
// route table, in mesh mode) takes the first route of a virtual host whose match holds.
type Match struct {
	// Prefix matches a path prefix (exactly one of Prefix, Path and Regex). A prefix that does
	// not end in "/" matches whole path segments (see PathMatch).
	Prefix string `yaml:"prefix"`
	// Path matches a path exactly.
	Path string `yaml:"path"`
	// Regex matches the whole path (query excluded) with an RE2 expression (Envoy's
	// safe_regex).
	Regex string `yaml:"regex"`
	// CaseSensitive false matches prefix and path without regard to ASCII case (default
	// true). A regex says so itself, with (?i).
	CaseSensitive *bool `yaml:"case_sensitive"`
	// Methods restricts the route to these HTTP methods (empty: any).
	Methods []string `yaml:"methods"`
	// Headers must all match (Envoy's header matchers).
	Headers []HeaderMatch `yaml:"headers"`
}

// HeaderMatch matches one request header: exactly one of Exact, Prefix, Suffix, Contains,
// Regex (the whole value) and Present. A header sent several times is matched as Envoy
// joins it, values separated by ",".
type HeaderMatch struct {
	// Name is the header's name, lower case.
	Name     string `yaml:"name"`
	Exact    string `yaml:"exact"`
	Prefix   string `yaml:"prefix"`
	Suffix   string `yaml:"suffix"`
	Contains string `yaml:"contains"`
	Regex    string `yaml:"regex"`
	// Present true matches when the header is sent (any value), false when it is not.
	Present *bool `yaml:"present"`
	// IgnoreCase compares exact, prefix, suffix and contains without regard to ASCII case.
	IgnoreCase bool `yaml:"ignore_case"`
	// Invert inverts the match. As in Envoy, a missing header matches no value matcher,
	// inverted or not: use present to match on absence.
	Invert bool `yaml:"invert"`
}

// Upstream is a service behind Envoy.
type Upstream struct {
	Name string `yaml:"name"`
	// Endpoints are host:port pairs. IP endpoints are served by EDS; host names make a
	// STRICT_DNS cluster that Envoy resolves itself.
	Endpoints []string `yaml:"endpoints"`
	// Timeout is the request timeout of routes to this upstream.
	Timeout time.Duration `yaml:"timeout"`
	// ConnectTimeout bounds connection setup.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// Default returns a Config holding every default, for the decoder to fill in.
func Default() *Config {
	return &Config{
		Listen: DefaultListen,
		Admin:  DefaultAdmin,
		Authz: Authz{
			Timeout:                DefaultAuthzTimeout,
			StatusOnError:          DefaultStatusOnError,
			IncludePeerCertificate: true,
			ConnectTimeout:         DefaultConnectTimeout,
		},
	}
}

// Load reads, decodes and validates the file at path. Relative cert_file and key_file paths
// are taken relative to the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	cfg.resolvePaths(configcheck.DirOf(path))
	return cfg, nil
}

// resolvePaths makes relative certificate paths relative to the config file's directory.
func (c *Config) resolvePaths(dir configcheck.Dir) {
	for fi := range c.Fleets {
		for li := range c.Fleets[fi].Listeners {
			if t := c.Fleets[fi].Listeners[li].TLS; t != nil {
				dir.Resolve(&t.CertFile, &t.KeyFile, &t.ClientCAFile)
			}
		}
	}
	if t := c.TLS; t != nil {
		dir.Resolve(&t.CertFile, &t.KeyFile, &t.ClientCAFile)
	}
	if t := c.Authz.TLS; t != nil {
		dir.Resolve(&t.CAFile, &t.CertFile, &t.KeyFile)
	}
	for fi := range c.Fleets {
		if t := c.Fleets[fi].AuthzTLS; t != nil {
			dir.Resolve(&t.CertFile, &t.KeyFile)
		}
	}
}

// Parse decodes and validates a config; name (usually the file path) prefixes every error.
// Unknown fields are errors, so a misspelt key never silently means "default".
func Parse(name string, data []byte) (*Config, error) {
	cfg := Default()
	if err := yamlfile.Decode(data, cfg); err != nil {
		if errors.Is(err, yamlfile.ErrEmpty) {
			return nil, fmt.Errorf("%s: empty config", name)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return cfg, nil
}

// applyDefaults fills per-item defaults the top-level Default cannot reach.
func (c *Config) applyDefaults() {
	if c.Authz.IdentityHeaders == nil {
		c.Authz.IdentityHeaders = contract.IdentityHeaders()
	}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		if u.Timeout == 0 {
			u.Timeout = DefaultUpstreamTimout
		}
		if u.ConnectTimeout == 0 {
			u.ConnectTimeout = DefaultConnectTimeout
		}
	}
	for fi := range c.Fleets {
		for li := range c.Fleets[fi].Listeners {
			for vi := range c.Fleets[fi].Listeners[li].VirtualHosts {
				vh := &c.Fleets[fi].Listeners[li].VirtualHosts[vi]
				if m := vh.ResourceMetadata; m != nil && m.CacheMaxAge == 0 {
					m.CacheMaxAge = DefaultMetadataMaxAge
				}
				for ri := range vh.Routes {
					if vh.Routes[ri].Mode == "" && !vh.Routes[ri].Public {
						vh.Routes[ri].Mode = contract.ModeEnforce
					}
				}
			}
		}
	}
}

// Upstream returns the upstream called name.
func (c *Config) Upstream(name string) (*Upstream, bool) {
	for i := range c.Upstreams {
		if c.Upstreams[i].Name == name {
			return &c.Upstreams[i], true
		}
	}
	return nil, false
}

// Fleet returns the fleet called name.
func (c *Config) Fleet(name string) (*Fleet, bool) {
	for i := range c.Fleets {
		if c.Fleets[i].Name == name {
			return &c.Fleets[i], true
		}
	}
	return nil, false
}

// TLSFiles lists every certificate and key file pushed to Envoy, so a watcher can follow
// them (the ADS server's own certificate reloads by itself).
func (c *Config) TLSFiles() []string {
	var files []string
	for _, f := range c.Fleets {
		for _, l := range f.Listeners {
			if l.TLS.Enabled() {
				files = append(files, l.TLS.CertFile, l.TLS.KeyFile)
			}
		}
	}
	if t := c.Authz.TLS; t != nil {
		files = append(files, t.CAFile)
		if t.CertFile != "" {
			files = append(files, t.CertFile, t.KeyFile)
		}
	}
	for _, f := range c.Fleets {
		if t := f.AuthzTLS; t != nil {
			files = append(files, t.CertFile, t.KeyFile)
		}
	}
	return files
}

// PrivateKeysPushed says what would send Envoys a private key over ADS, for the
// insecure_plaintext_secrets check ("" when nothing does).
func (c *Config) PrivateKeysPushed() []string {
	var what []string
	for _, f := range c.Fleets {
		for _, l := range f.Listeners {
			if l.TLS.Enabled() {
				what = append(what, fmt.Sprintf("fleet %q: listener %q: tls", f.Name, l.Name))
			}
		}
	}
	if t := c.Authz.TLS; t != nil && t.KeyFile != "" {
		what = append(what, "authz: tls: key_file")
	}
	for _, f := range c.Fleets {
		if f.AuthzTLS != nil {
			what = append(what, fmt.Sprintf("fleet %q: authz_tls: key_file", f.Name))
		}
	}
	return what
}

// AuthzClientCert is the client certificate and key a fleet's Envoys present to authz: the
// fleet's authz_tls, else authz.tls's ("" when there is none); at names the field.
func (c *Config) AuthzClientCert(f *Fleet) (certFile, keyFile, at string) {
	if t := f.AuthzTLS; t != nil {
		return t.CertFile, t.KeyFile, fmt.Sprintf("fleets[%q].authz_tls.cert_file", f.Name)
	}
	if t := c.Authz.TLS; t != nil && t.CertFile != "" {
		return t.CertFile, t.KeyFile, "authz.tls.cert_file"
	}
	return "", "", ""
}
