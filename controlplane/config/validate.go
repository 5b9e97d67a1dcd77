package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/scopegate/scopegate/controlplane/translate/names"
	"github.com/scopegate/scopegate/internal/configcheck"
	"github.com/scopegate/scopegate/internal/contract"
)

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$`)
	dnsRE    = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
	domainRE = regexp.MustCompile(`^[A-Za-z0-9.:\[\]-]+$`)
	methods  = map[string]bool{
		"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true,
		"DELETE": true, "OPTIONS": true, "CONNECT": true, "TRACE": true,
	}
)

// Validate checks the whole config and returns every problem found, each naming where it is
// (fleet, listener, virtual host, route, upstream) and what is wrong. Call it after defaults
// are applied (Parse does both).
func (c *Config) Validate() error {
	errs := &configcheck.Problems{}
	checkHostPort(errs, "listen", c.Listen, true)
	checkHostPort(errs, "admin", c.Admin, true)
	c.validateTLS(errs)
	c.validateAuthz(errs)
	if err := c.Tracing.Validate(); err != nil {
		errs.Join(err)
	}

	upstreams := map[string]bool{}
	for i, u := range c.Upstreams {
		at := fmt.Sprintf("upstreams[%d] %q", i, u.Name)
		checkName(errs, at, u.Name)
		if names.Cluster(u.Name) == names.AuthzCluster {
			errs.Addf("%s: name %q is reserved for the authz cluster", at, u.Name)
		}
		if upstreams[u.Name] {
			errs.Addf("%s: duplicate upstream name", at)
		}
		upstreams[u.Name] = true
		if len(u.Endpoints) == 0 {
			errs.Addf("%s: endpoints: at least one host:port is required", at)
		}
		seen := map[string]bool{}
		for j, ep := range u.Endpoints {
			checkHostPort(errs, fmt.Sprintf("%s: endpoints[%d]", at, j), ep, false)
			if seen[ep] {
				errs.Addf("%s: endpoints[%d]: duplicate endpoint %q", at, j, ep)
			}
			seen[ep] = true
		}
		if u.Timeout < 0 {
			errs.Addf("%s: timeout: must not be negative", at)
		}
		if u.ConnectTimeout <= 0 {
			errs.Addf("%s: connect_timeout: must be positive", at)
		}
	}

	if len(c.Fleets) == 0 {
		errs.Addf("fleets: at least one fleet is required")
	}
	fleets := map[string]bool{}
	for i := range c.Fleets {
		f := &c.Fleets[i]
		at := entry(errs, "", "fleet", "fleets", f.Name, i)
		if t := f.AuthzTLS; t != nil {
			switch {
			case c.Authz.TLS == nil:
				errs.Addf("%s: authz_tls: needs authz.tls (its ca_file and server_name are every fleet's)", at)
			case t.CertFile == "" || t.KeyFile == "":
				errs.Addf("%s: authz_tls: cert_file and key_file are both required", at)
			}
		}
		if fleets[f.Name] {
			errs.Addf("%s: duplicate fleet name", at)
		}
		fleets[f.Name] = true
		c.validateFleet(errs, at, f, upstreams)
	}
	return errs.Err()
}

func (c *Config) validateAuthz(errs *configcheck.Problems) {
	a := c.Authz
	socket, isSocket := a.SocketPath()
	switch {
	case a.Address == "":
		errs.Addf("authz: address: required (host:port of the scopegate authz service)")
	case isSocket && !strings.HasPrefix(socket, "/"):
		errs.Addf("authz: address: %q: a Unix socket needs an absolute path (unix:///run/scopegate/authz.sock)", a.Address)
	case !isSocket:
		checkHostPort(errs, "authz: address", a.Address, false)
	}
	if isSocket && a.TLS != nil && a.TLS.ServerName == "" {
		errs.Addf("authz: tls: server_name: required when address is a Unix socket (there is no host name to match)")
	}
	if a.Timeout <= 0 {
		errs.Addf("authz: timeout: must be positive, got %s", a.Timeout)
	}
	if a.ConnectTimeout <= 0 {
		errs.Addf("authz: connect_timeout: must be positive, got %s", a.ConnectTimeout)
	}
	if a.StatusOnError < 400 || a.StatusOnError > 599 {
		errs.Addf("authz: status_on_error: %d is not an HTTP error status (400-599)", a.StatusOnError)
	}
	if t := a.TLS; t != nil {
		if t.CAFile == "" {
			errs.Addf("authz: tls: ca_file: required (the CA that signed the authz service's certificate)")
		}
		if (t.CertFile == "") != (t.KeyFile == "") {
			errs.Addf("authz: tls: cert_file and key_file go together (Envoy's client certificate for authz)")
		}
		if t.ServerName != "" && !dnsRE.MatchString(t.ServerName) {
			errs.Addf("authz: tls: server_name: %q is not a DNS name", t.ServerName)
		}
	}
}

func (c *Config) validateTLS(errs *configcheck.Problems) {
	if t := c.TLS; t != nil {
		if err := t.Files.Validate("tls"); err != nil {
			errs.Join(err)
		}
		switch {
		case t.ClientCAFile != "" && t.TrustDomain == "":
			errs.Addf("tls.trust_domain: required with client_ca_file (Envoy certificates must name spiffe://<trust_domain>/fleet/<fleet>)")
		case t.TrustDomain != "" && !dnsRE.MatchString(t.TrustDomain):
			errs.Addf("tls.trust_domain: %q is not a SPIFFE trust domain (a DNS-like name such as example.org)", t.TrustDomain)
		case t.TrustDomain != "" && t.ClientCAFile == "":
			errs.Addf("tls.trust_domain: needs client_ca_file (without client certificates there is no identity to check)")
		}
	}
	if keys := c.PrivateKeysPushed(); len(keys) > 0 && !c.InsecurePlaintextSecrets {
		switch {
		case c.TLS == nil:
			errs.Addf("insecure_plaintext_secrets: private keys would go to Envoy over plaintext ADS (%s): configure tls "+
				"(with client_ca_file) for the ADS server, or set insecure_plaintext_secrets: true for local development only",
				strings.Join(keys, "; "))
		case c.TLS.ClientCAFile == "":
			// Encrypted, but nobody is authenticated: any client that reaches the port can
			// name any fleet (node.cluster) and receive its keys. As good as plaintext.
			errs.Addf("insecure_plaintext_secrets: private keys would go to any ADS client (%s): tls has no client_ca_file, so any client "+
				"can name any fleet; configure tls.client_ca_file and tls.trust_domain, or set insecure_plaintext_secrets: true for local development only",
				strings.Join(keys, "; "))
		}
	}
}

func (c *Config) validateFleet(errs *configcheck.Problems, at string, f *Fleet, upstreams map[string]bool) {
	if len(f.Listeners) == 0 {
		errs.Addf("%s: listeners: at least one listener is required", at)
	}
	names := map[string]bool{}
	type bound struct {
		name string
		ip   net.IP
	}
	ports := map[int][]bound{}
	for i := range f.Listeners {
		l := &f.Listeners[i]
		lat := entry(errs, at, "listener", "listeners", l.Name, i)
		if names[l.Name] {
			errs.Addf("%s: duplicate listener name", lat)
		}
		names[l.Name] = true

		ip := net.ParseIP(l.Address)
		if ip == nil {
			errs.Addf("%s: address: %q is not an IP address (Envoy listeners bind IPs, e.g. 0.0.0.0)", lat, l.Address)
		}
		if l.Port < 1 || l.Port > 65535 {
			errs.Addf("%s: port: %d is out of range 1-65535", lat, l.Port)
		} else if ip != nil {
			for _, other := range ports[l.Port] {
				if other.ip.Equal(ip) || other.ip.IsUnspecified() || ip.IsUnspecified() {
					errs.Addf("%s: port %d clashes with listener %q (%s:%d)", lat, l.Port, other.name, other.ip, l.Port)
				}
			}
			ports[l.Port] = append(ports[l.Port], bound{l.Name, ip})
		}
		if l.TLS != nil && l.TLS.Enabled() {
			if l.TLS.CertFile == "" {
				errs.Addf("%s: tls: cert_file is required with key_file", lat)
			}
			if l.TLS.KeyFile == "" {
				errs.Addf("%s: tls: key_file is required with cert_file", lat)
			}
		}
		if l.TLS != nil && l.TLS.RequireClientCertificate && l.TLS.ClientCAFile == "" {
			errs.Addf("%s: tls: require_client_certificate needs client_ca_file", lat)
		}
		if l.TLS != nil && l.TLS.ClientCAFile != "" && !l.TLS.Enabled() {
			errs.Addf("%s: tls: client_ca_file needs cert_file and key_file", lat)
		}
		validateListenerRoutes(errs, lat, l, upstreams)
	}
}

func validateListenerRoutes(errs *configcheck.Problems, lat string, l *Listener, upstreams map[string]bool) {
	if len(l.VirtualHosts) == 0 {
		errs.Addf("%s: virtual_hosts: at least one virtual host is required", lat)
	}
	vhosts := map[string]bool{}
	domains := map[string]string{}
	routes := map[string]string{}
	for i := range l.VirtualHosts {
		vh := &l.VirtualHosts[i]
		vat := entry(errs, lat, "virtual host", "virtual_hosts", vh.Name, i)
		if vhosts[vh.Name] {
			errs.Addf("%s: duplicate virtual host name", vat)
		}
		vhosts[vh.Name] = true
		if len(vh.Domains) == 0 {
			errs.Addf("%s: domains: at least one domain is required (\"*\" matches any)", vat)
		}
		for j, d := range vh.Domains {
			if err := checkDomain(d); err != nil {
				errs.Addf("%s: domains[%d]: %v", vat, j, err)
				continue
			}
			key := strings.ToLower(d)
			if prev, ok := domains[key]; ok {
				errs.Addf("%s: domains[%d]: %q is already served by virtual host %q", vat, j, d, prev)
			}
			domains[key] = vh.Name
		}
		if len(vh.Routes) == 0 {
			errs.Addf("%s: routes: at least one route is required", vat)
		}
		for j := range vh.Routes {
			r := &vh.Routes[j]
			rat := entry(errs, vat, "route", "routes", r.Name, j)
			if prev, ok := routes[r.Name]; ok && r.Name != "" {
				errs.Addf("%s: duplicate route name (also in virtual host %q); route names label requests for the policy and must be unique per listener", rat, prev)
			}
			routes[r.Name] = vh.Name
			validateRoute(errs, rat, r, upstreams)
		}
		if vh.ResourceMetadata != nil {
			validateResourceMetadata(errs, vat, vh)
		}
	}
	for i := range l.VirtualHosts {
		vh := &l.VirtualHosts[i]
		if vh.ResourceMetadata == nil {
			continue
		}
		if prev, ok := routes[names.MetadataRoute(vh.Name)]; ok {
			errs.Addf("%s: virtual host %q: route name %q (in virtual host %q) is reserved for the resource metadata route", lat, vh.Name, names.MetadataRoute(vh.Name), prev)
		}
	}
}

func validateResourceMetadata(errs *configcheck.Problems, vat string, vh *VirtualHost) {
	m := vh.ResourceMetadata
	at := vat + ": resource_metadata"
	if m.Resource == "" {
		errs.Addf("%s: resource: required (the API's identifier, e.g. https://api.example.com)", at)
	} else {
		checkHTTPSURL(errs, at+": resource", m.Resource)
	}
	if len(m.AuthorizationServers) == 0 {
		errs.Addf("%s: authorization_servers: at least one issuer URL is required", at)
	}
	for i, s := range m.AuthorizationServers {
		checkHTTPSURL(errs, fmt.Sprintf("%s: authorization_servers[%d]", at, i), s)
	}
	for _, o := range [][2]string{{"jwks_uri", m.JWKSURI}, {"resource_documentation", m.ResourceDocumentation},
		{"resource_policy_uri", m.ResourcePolicyURI}, {"resource_tos_uri", m.ResourceTOSURI}} {
		if o[1] != "" {
			checkHTTPSURL(errs, at+": "+o[0], o[1])
		}
	}
	for i, alg := range m.ResourceSigningAlgValuesSupported {
		if alg == "none" || alg == "" {
			errs.Addf("%s: resource_signing_alg_values_supported[%d]: %q is not a signing algorithm (RFC 9728 §2 forbids none)", at, i, alg)
		}
	}
	if m.CacheMaxAge < 0 {
		errs.Addf("%s: cache_max_age: must not be negative", at)
	}
	if m.Resource == "" {
		return
	}
	doc := m.DocumentPath()
	for j := range vh.Routes {
		r := &vh.Routes[j]
		if matchesPath(r.Match, doc) {
			errs.Addf("%s: route %q matches the resource metadata path %s; the metadata route would shadow it (narrow the route's match)", vat, r.Name, doc)
		}
	}
}

// matchesPath reports whether a route's match (as translate builds it) takes path. A bare
// prefix "/" is the catch-all ("everything else") and is not counted: the document's exact
// route is carved out of it by design.
func matchesPath(m Match, path string) bool {
	kind, value := m.PathMatch()
	if kind == PathRegex {
		re, err := regexp.Compile(`^(?:` + value + `)$`)
		return err == nil && re.MatchString(path)
	}
	if !m.IsCaseSensitive() {
		value, path = strings.ToLower(value), strings.ToLower(path)
	}
	switch kind {
	case PathExact:
		return value == path
	case PathPrefix:
		return value != "/" && strings.HasPrefix(path, value)
	case PathSeparatedPrefix:
		return path == value || strings.HasPrefix(path, value+"/")
	}
	return false
}

// maxRegex bounds a route's regular expressions (Envoy refuses large RE2 programs too).
const maxRegex = 1024

func checkRegex(errs *configcheck.Problems, at, re string) {
	if len(re) > maxRegex {
		errs.Addf("%s: longer than %d characters", at, maxRegex)
		return
	}
	if _, err := regexp.Compile(`^(?:` + re + `)$`); err != nil {
		errs.Addf("%s: %q is not an RE2 expression: %v", at, re, err)
	}
}

// headerNameRE is a lower-case HTTP header name (RFC 9110 token).
var headerNameRE = regexp.MustCompile("^[a-z0-9!#$%&'*+.^_`|~-]+$")

func validateHeaderMatches(errs *configcheck.Problems, rat string, hs []HeaderMatch) {
	for i, h := range hs {
		at := fmt.Sprintf("%s: match: headers[%d]", rat, i)
		switch {
		case h.Name == "":
			errs.Addf("%s: name: required", at)
		case strings.HasPrefix(h.Name, ":") || h.Name == "host":
			errs.Addf("%s: name %q: match the path with prefix, path or regex, the method with methods and the host with the virtual host's domains", at, h.Name)
		case !headerNameRE.MatchString(h.Name):
			errs.Addf("%s: name %q is not a lower-case header name", at, h.Name)
		}
		set := 0
		for _, s := range []string{h.Exact, h.Prefix, h.Suffix, h.Contains, h.Regex} {
			if s != "" {
				set++
			}
		}
		if h.Present != nil {
			set++
		}
		if set != 1 {
			errs.Addf("%s: exactly one of exact, prefix, suffix, contains, regex and present is required", at)
			continue
		}
		if h.Regex != "" {
			checkRegex(errs, at+": regex", h.Regex)
		}
		if h.IgnoreCase && (h.Regex != "" || h.Present != nil) {
			errs.Addf("%s: ignore_case applies to exact, prefix, suffix and contains only (write (?i) in a regex)", at)
		}
	}
}

// checkHTTPSURL checks an RFC 9728 / RFC 8414 identifier: absolute https URL without query,
// fragment or user info. Plain http is accepted for loopback hosts only (local demos).
func checkHTTPSURL(errs *configcheck.Problems, at, s string) {
	u, err := url.Parse(s)
	if err != nil {
		errs.Addf("%s: %q is not a URL: %v", at, s, err)
		return
	}
	switch {
	case u.Host == "" || !u.IsAbs():
		errs.Addf("%s: %q must be an absolute URL with a host", at, s)
	case u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())):
		errs.Addf("%s: %q must use https (http only for localhost)", at, s)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		errs.Addf("%s: %q must not have a query or fragment", at, s)
	case u.User != nil:
		errs.Addf("%s: %q must not carry user info", at, s)
	case strings.ContainsAny(s, "\"\\ "):
		errs.Addf("%s: %q must not contain quotes, backslashes or spaces", at, s)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validateRoute(errs *configcheck.Problems, rat string, r *Route, upstreams map[string]bool) {
	m := r.Match
	set := 0
	for _, s := range []string{m.Prefix, m.Path, m.Regex} {
		if s != "" {
			set++
		}
	}
	switch {
	case set == 0:
		errs.Addf("%s: match: one of prefix, path or regex is required", rat)
	case set > 1:
		errs.Addf("%s: match: prefix, path and regex are mutually exclusive", rat)
	case m.Prefix != "":
		checkPath(errs, rat+": match: prefix", m.Prefix)
	case m.Path != "":
		checkPath(errs, rat+": match: path", m.Path)
	default:
		checkRegex(errs, rat+": match: regex", m.Regex)
		if m.CaseSensitive != nil {
			errs.Addf("%s: match: case_sensitive does not apply to regex (Envoy ignores it there): write (?i) in the expression", rat)
		}
	}
	validateHeaderMatches(errs, rat, m.Headers)
	seen := map[string]bool{}
	for i, meth := range m.Methods {
		if !methods[meth] {
			errs.Addf("%s: match: methods[%d]: %q is not an HTTP method (use upper case: GET, POST, ...)", rat, i, meth)
		}
		if seen[meth] {
			errs.Addf("%s: match: methods[%d]: duplicate method %q", rat, i, meth)
		}
		seen[meth] = true
	}
	switch {
	case upstreams == nil:
		// A route table for authz alone (mesh mode): someone else's control plane routes.
	case r.Upstream == "":
		errs.Addf("%s: upstream: required", rat)
	case !upstreams[r.Upstream]:
		errs.Addf("%s: upstream %q is not defined in upstreams", rat, r.Upstream)
	}
	if r.Timeout < 0 {
		errs.Addf("%s: timeout: must not be negative", rat)
	}
	if r.Public {
		if len(r.Scopes) > 0 {
			errs.Addf("%s: public route cannot require scopes %v (remove public or scopes)", rat, r.Scopes)
		}
		if r.Mode != "" {
			errs.Addf("%s: mode %q applies to protected routes only, not to a public route", rat, r.Mode)
		}
		if r.Binding != "" {
			errs.Addf("%s: binding %q applies to protected routes only, not to a public route", rat, r.Binding)
		}
		if len(r.ACRValues) > 0 || r.MaxAge != 0 {
			errs.Addf("%s: acr_values and max_age apply to protected routes only, not to a public route", rat)
		}
		return
	}
	validateStepUp(errs, rat, r)
	if r.Binding != "" && r.Binding != contract.BindingRequired {
		errs.Addf("%s: binding: %q is not %q (or empty, for any token)", rat, r.Binding, contract.BindingRequired)
	}
	if r.Mode != contract.ModeEnforce && r.Mode != contract.ModeShadow {
		errs.Addf("%s: mode: %q is not one of %q, %q", rat, r.Mode, contract.ModeEnforce, contract.ModeShadow)
	}
	seenScope := map[string]bool{}
	for i, s := range r.Scopes {
		if err := checkScope(s); err != nil {
			errs.Addf("%s: scopes[%d]: %v", rat, i, err)
		}
		if seenScope[s] {
			errs.Addf("%s: scopes[%d]: duplicate scope %q", rat, i, s)
		}
		seenScope[s] = true
	}
}

// validateStepUp checks a route's RFC 9470 requirements: acr values that can travel in a
// space-separated list and a quoted challenge parameter unchanged, and a max_age of whole
// seconds (the unit of the challenge and of OpenID Connect's max_age).
func validateStepUp(errs *configcheck.Problems, rat string, r *Route) {
	seen := map[string]bool{}
	for i, a := range r.ACRValues {
		if !contract.ValidACR(a) {
			errs.Addf("%s: acr_values[%d]: %q is not an acr value (1 to 256 visible ASCII characters, no space, quote or backslash)", rat, i, a)
		}
		if seen[a] {
			errs.Addf("%s: acr_values[%d]: duplicate value %q", rat, i, a)
		}
		seen[a] = true
	}
	switch m := r.MaxAge; {
	case m < 0:
		errs.Addf("%s: max_age: %s must not be negative (0 or absent: any age)", rat, m)
	case m%time.Second != 0:
		errs.Addf("%s: max_age: %s is not a whole number of seconds (RFC 9470 max_age is in seconds)", rat, m)
	case m > contract.MaxMaxAge*time.Second:
		errs.Addf("%s: max_age: %s is more than a year; use a duration such as 5m or 12h", rat, m)
	}
}

// checkScope applies RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func checkScope(s string) error {
	if s == "" {
		return errors.New("empty scope")
	}
	for _, c := range []byte(s) {
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return fmt.Errorf("scope %q has a character not allowed in an OAuth scope (RFC 6749 §3.3)", s)
		}
	}
	return nil
}

func checkPath(errs *configcheck.Problems, at, p string) {
	if !strings.HasPrefix(p, "/") {
		errs.Addf("%s: %q must start with /", at, p)
		return
	}
	for _, c := range []byte(p) {
		if c <= 0x20 || c == 0x7f || c == '?' || c == '#' {
			errs.Addf("%s: %q must not contain whitespace, control characters, ? or #", at, p)
			return
		}
	}
}

func checkDomain(d string) error {
	if d == "*" {
		return nil
	}
	rest := d
	switch {
	case strings.HasPrefix(d, "*"):
		rest = d[1:]
	case strings.HasSuffix(d, "*"):
		rest = d[:len(d)-1]
	}
	if rest == "" || strings.Contains(rest, "*") || !domainRE.MatchString(rest) {
		return fmt.Errorf("%q is not a host name, host:port, or a wildcard (*, *.example.com, example.*)", d)
	}
	return nil
}

// hostPort checks "host:port". With listen, the host may be empty (all interfaces).
func checkHostPort(errs *configcheck.Problems, at, s string, listen bool) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		errs.Addf("%s: %q is not host:port: %v", at, s, err)
		return
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 || (!listen && p == 0) {
		errs.Addf("%s: %q has an invalid port %q", at, s, port)
	}
	if host == "" {
		if !listen {
			errs.Addf("%s: %q has no host", at, s)
		}
		return
	}
	if net.ParseIP(host) == nil && !dnsRE.MatchString(host) {
		errs.Addf("%s: %q: host %q is neither an IP address nor a DNS name", at, s, host)
	}
}

// checkName checks the name of a fleet, upstream, listener, virtual host or route.
// entry is where the i-th entry of a list stands in messages (parent: kind "name", or
// parent: list[i] when it has no name), its name checked on the way.
func entry(errs *configcheck.Problems, parent, kind, list, name string, i int) string {
	at := fmt.Sprintf("%s %q", kind, name)
	if name == "" {
		at = fmt.Sprintf("%s[%d]", list, i)
	}
	if parent != "" {
		at = parent + ": " + at
	}
	checkName(errs, at, name)
	return at
}

func checkName(errs *configcheck.Problems, at, name string) {
	switch {
	case name == "":
		errs.Addf("%s: name: required", at)
	case !nameRE.MatchString(name):
		errs.Addf("%s: name %q: use letters, digits, '.', '_' and '-' (at most 128, starting and ending with a letter or digit)", at, name)
	}
}
