package config

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/scopegate/scopegate/internal/contract"
)

// AuthzClusterName is the cluster the ext_authz filter calls; no upstream may take this name.
const AuthzClusterName = "scopegate_authz"

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
	v := &validator{}
	v.hostPort("listen", c.Listen, true)
	v.hostPort("admin", c.Admin, true)
	c.validateAuthz(v)

	upstreams := map[string]bool{}
	for i, u := range c.Upstreams {
		at := fmt.Sprintf("upstreams[%d] %q", i, u.Name)
		v.name(at, u.Name)
		if u.Name == AuthzClusterName {
			v.addf("%s: name %q is reserved for the authz cluster", at, u.Name)
		}
		if upstreams[u.Name] {
			v.addf("%s: duplicate upstream name", at)
		}
		upstreams[u.Name] = true
		if len(u.Endpoints) == 0 {
			v.addf("%s: endpoints: at least one host:port is required", at)
		}
		seen := map[string]bool{}
		for j, ep := range u.Endpoints {
			v.hostPort(fmt.Sprintf("%s: endpoints[%d]", at, j), ep, false)
			if seen[ep] {
				v.addf("%s: endpoints[%d]: duplicate endpoint %q", at, j, ep)
			}
			seen[ep] = true
		}
		if u.Timeout < 0 {
			v.addf("%s: timeout: must not be negative", at)
		}
		if u.ConnectTimeout <= 0 {
			v.addf("%s: connect_timeout: must be positive", at)
		}
	}

	if len(c.Fleets) == 0 {
		v.addf("fleets: at least one fleet is required")
	}
	fleets := map[string]bool{}
	for i := range c.Fleets {
		f := &c.Fleets[i]
		at := fmt.Sprintf("fleet %q", f.Name)
		if f.Name == "" {
			at = fmt.Sprintf("fleets[%d]", i)
		}
		v.name(at, f.Name)
		if fleets[f.Name] {
			v.addf("%s: duplicate fleet name", at)
		}
		fleets[f.Name] = true
		c.validateFleet(v, at, f, upstreams)
	}
	return v.err()
}

func (c *Config) validateAuthz(v *validator) {
	a := c.Authz
	if a.Address == "" {
		v.addf("authz: address: required (host:port of the scopegate authz service)")
	} else {
		v.hostPort("authz: address", a.Address, false)
	}
	if a.Timeout <= 0 {
		v.addf("authz: timeout: must be positive, got %s", a.Timeout)
	}
	if a.ConnectTimeout <= 0 {
		v.addf("authz: connect_timeout: must be positive, got %s", a.ConnectTimeout)
	}
	if a.StatusOnError < 400 || a.StatusOnError > 599 {
		v.addf("authz: status_on_error: %d is not an HTTP error status (400-599)", a.StatusOnError)
	}
}

func (c *Config) validateFleet(v *validator, at string, f *Fleet, upstreams map[string]bool) {
	if len(f.Listeners) == 0 {
		v.addf("%s: listeners: at least one listener is required", at)
	}
	names := map[string]bool{}
	type bound struct {
		name string
		ip   net.IP
	}
	ports := map[int][]bound{}
	for i := range f.Listeners {
		l := &f.Listeners[i]
		lat := fmt.Sprintf("%s: listener %q", at, l.Name)
		if l.Name == "" {
			lat = fmt.Sprintf("%s: listeners[%d]", at, i)
		}
		v.name(lat, l.Name)
		if names[l.Name] {
			v.addf("%s: duplicate listener name", lat)
		}
		names[l.Name] = true

		ip := net.ParseIP(l.Address)
		if ip == nil {
			v.addf("%s: address: %q is not an IP address (Envoy listeners bind IPs, e.g. 0.0.0.0)", lat, l.Address)
		}
		if l.Port < 1 || l.Port > 65535 {
			v.addf("%s: port: %d is out of range 1-65535", lat, l.Port)
		} else if ip != nil {
			for _, other := range ports[l.Port] {
				if other.ip.Equal(ip) || other.ip.IsUnspecified() || ip.IsUnspecified() {
					v.addf("%s: port %d clashes with listener %q (%s:%d)", lat, l.Port, other.name, other.ip, l.Port)
				}
			}
			ports[l.Port] = append(ports[l.Port], bound{l.Name, ip})
		}
		if l.TLS != nil && l.TLS.Enabled() {
			if l.TLS.CertFile == "" {
				v.addf("%s: tls: cert_file is required with key_file", lat)
			}
			if l.TLS.KeyFile == "" {
				v.addf("%s: tls: key_file is required with cert_file", lat)
			}
		}
		validateListenerRoutes(v, lat, l, upstreams)
	}
}

func validateListenerRoutes(v *validator, lat string, l *Listener, upstreams map[string]bool) {
	if len(l.VirtualHosts) == 0 {
		v.addf("%s: virtual_hosts: at least one virtual host is required", lat)
	}
	vhosts := map[string]bool{}
	domains := map[string]string{}
	routes := map[string]string{}
	for i := range l.VirtualHosts {
		vh := &l.VirtualHosts[i]
		vat := fmt.Sprintf("%s: virtual host %q", lat, vh.Name)
		if vh.Name == "" {
			vat = fmt.Sprintf("%s: virtual_hosts[%d]", lat, i)
		}
		v.name(vat, vh.Name)
		if vhosts[vh.Name] {
			v.addf("%s: duplicate virtual host name", vat)
		}
		vhosts[vh.Name] = true
		if len(vh.Domains) == 0 {
			v.addf("%s: domains: at least one domain is required (\"*\" matches any)", vat)
		}
		for j, d := range vh.Domains {
			if err := checkDomain(d); err != nil {
				v.addf("%s: domains[%d]: %v", vat, j, err)
				continue
			}
			key := strings.ToLower(d)
			if prev, ok := domains[key]; ok {
				v.addf("%s: domains[%d]: %q is already served by virtual host %q", vat, j, d, prev)
			}
			domains[key] = vh.Name
		}
		if len(vh.Routes) == 0 {
			v.addf("%s: routes: at least one route is required", vat)
		}
		for j := range vh.Routes {
			r := &vh.Routes[j]
			rat := fmt.Sprintf("%s: route %q", vat, r.Name)
			if r.Name == "" {
				rat = fmt.Sprintf("%s: routes[%d]", vat, j)
			}
			v.name(rat, r.Name)
			if prev, ok := routes[r.Name]; ok && r.Name != "" {
				v.addf("%s: duplicate route name (also in virtual host %q); route names label requests for the policy and must be unique per listener", rat, prev)
			}
			routes[r.Name] = vh.Name
			validateRoute(v, rat, r, upstreams)
		}
	}
}

func validateRoute(v *validator, rat string, r *Route, upstreams map[string]bool) {
	m := r.Match
	switch {
	case m.Prefix == "" && m.Path == "":
		v.addf("%s: match: one of prefix or path is required", rat)
	case m.Prefix != "" && m.Path != "":
		v.addf("%s: match: prefix and path are mutually exclusive", rat)
	case m.Prefix != "":
		checkPath(v, rat+": match: prefix", m.Prefix)
	default:
		checkPath(v, rat+": match: path", m.Path)
	}
	seen := map[string]bool{}
	for i, meth := range m.Methods {
		if !methods[meth] {
			v.addf("%s: match: methods[%d]: %q is not an HTTP method (use upper case: GET, POST, ...)", rat, i, meth)
		}
		if seen[meth] {
			v.addf("%s: match: methods[%d]: duplicate method %q", rat, i, meth)
		}
		seen[meth] = true
	}
	if r.Upstream == "" {
		v.addf("%s: upstream: required", rat)
	} else if !upstreams[r.Upstream] {
		v.addf("%s: upstream %q is not defined in upstreams", rat, r.Upstream)
	}
	if r.Timeout < 0 {
		v.addf("%s: timeout: must not be negative", rat)
	}
	if r.Public {
		if len(r.Scopes) > 0 {
			v.addf("%s: public route cannot require scopes %v (remove public or scopes)", rat, r.Scopes)
		}
		if r.Mode != "" {
			v.addf("%s: mode %q applies to protected routes only, not to a public route", rat, r.Mode)
		}
		if r.Binding != "" {
			v.addf("%s: binding %q applies to protected routes only, not to a public route", rat, r.Binding)
		}
		return
	}
	if r.Binding != "" && r.Binding != contract.BindingRequired {
		v.addf("%s: binding: %q is not %q (or empty, for any token)", rat, r.Binding, contract.BindingRequired)
	}
	if r.Mode != contract.ModeEnforce && r.Mode != contract.ModeShadow {
		v.addf("%s: mode: %q is not one of %q, %q", rat, r.Mode, contract.ModeEnforce, contract.ModeShadow)
	}
	seenScope := map[string]bool{}
	for i, s := range r.Scopes {
		if err := checkScope(s); err != nil {
			v.addf("%s: scopes[%d]: %v", rat, i, err)
		}
		if seenScope[s] {
			v.addf("%s: scopes[%d]: duplicate scope %q", rat, i, s)
		}
		seenScope[s] = true
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

func checkPath(v *validator, at, p string) {
	if !strings.HasPrefix(p, "/") {
		v.addf("%s: %q must start with /", at, p)
		return
	}
	for _, c := range []byte(p) {
		if c <= 0x20 || c == 0x7f || c == '?' || c == '#' {
			v.addf("%s: %q must not contain whitespace, control characters, ? or #", at, p)
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
func (v *validator) hostPort(at, s string, listen bool) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		v.addf("%s: %q is not host:port: %v", at, s, err)
		return
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 || (!listen && p == 0) {
		v.addf("%s: %q has an invalid port %q", at, s, port)
	}
	if host == "" {
		if !listen {
			v.addf("%s: %q has no host", at, s)
		}
		return
	}
	if net.ParseIP(host) == nil && !dnsRE.MatchString(host) {
		v.addf("%s: %q: host %q is neither an IP address nor a DNS name", at, s, host)
	}
}

// validator collects every problem so one run reports them all.
type validator struct{ errs []error }

func (v *validator) addf(format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf(format, args...))
}

func (v *validator) name(at, name string) {
	switch {
	case name == "":
		v.addf("%s: name: required", at)
	case !nameRE.MatchString(name):
		v.addf("%s: name %q: use letters, digits, '.', '_' and '-' (at most 128, starting and ending with a letter or digit)", at, name)
	}
}

func (v *validator) err() error { return errors.Join(v.errs...) }
