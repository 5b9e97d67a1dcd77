package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/scopegate/scopegate/internal/configcheck"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/yamlfile"
)

// PathKind is how Envoy matches a route's path: the one decision translate turns into a
// RouteMatch path specifier and authz's route table (mesh mode) matches by.
type PathKind uint8

const (
	// PathExact: the path (query excluded) equals the value.
	PathExact PathKind = iota + 1
	// PathPrefix: the path starts with the value (a prefix ending in "/").
	PathPrefix
	// PathSeparatedPrefix: the path is the value or starts with the value and "/" (a prefix
	// not ending in "/"): "/orders" takes "/orders" and "/orders/1", never "/ordersx", so a
	// scope granted for one API never leaks onto a sibling whose name shares the prefix.
	PathSeparatedPrefix
	// PathRegex: the whole path matches the RE2 expression.
	PathRegex
)

// PathMatch says how the route's path is matched, and against what.
func (m Match) PathMatch() (PathKind, string) {
	switch {
	case m.Regex != "":
		return PathRegex, m.Regex
	case m.Path != "":
		return PathExact, m.Path
	case strings.HasSuffix(m.Prefix, "/"):
		return PathPrefix, m.Prefix
	}
	return PathSeparatedPrefix, m.Prefix
}

// IsCaseSensitive reports whether prefix and path match case-sensitively (the default).
func (m Match) IsCaseSensitive() bool { return m.CaseSensitive == nil || *m.CaseSensitive }

// StringKind is how a header matcher compares the header's value.
type StringKind uint8

const (
	StringExact StringKind = iota + 1
	StringPrefix
	StringSuffix
	StringContains
	StringRegex
	// StringPresent: the header is sent (value ignored); Value is "true" or "false".
	StringPresent
)

// Kind says how the header is matched, and against what.
func (h HeaderMatch) Kind() (StringKind, string) {
	switch {
	case h.Present != nil:
		if *h.Present {
			return StringPresent, "true"
		}
		return StringPresent, "false"
	case h.Exact != "":
		return StringExact, h.Exact
	case h.Prefix != "":
		return StringPrefix, h.Prefix
	case h.Suffix != "":
		return StringSuffix, h.Suffix
	case h.Contains != "":
		return StringContains, h.Contains
	}
	return StringRegex, h.Regex
}

// RouteContract is what protected route r of vh tells authz: its name, scopes, mode,
// binding and vh's RFC 9728 metadata document URL.
func (vh *VirtualHost) RouteContract(r *Route) contract.Route {
	c := contract.Route{Name: r.Name, Scopes: r.Scopes, Mode: r.Mode, Binding: r.Binding, ACRValues: r.ACRValues, MaxAge: r.MaxAge}
	if vh.ResourceMetadata != nil {
		c.MetadataURL = vh.ResourceMetadata.DocumentURL()
	}
	return c
}

// RouteExtensions are the ext_authz context extensions of route r of vh: what the control
// plane puts on the route for Envoy to send, and what authz's route table yields when it
// matches the route itself (mesh mode). Both halves call this one function. nil for a
// public route (ext_authz is disabled there).
func (vh *VirtualHost) RouteExtensions(r *Route) map[string]string {
	if r.Public {
		return nil
	}
	return vh.RouteContract(r).Encode()
}

// LoadRoutes reads the route table of a control plane file for authz's mesh mode (see
// ParseRoutes).
func LoadRoutes(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	return ParseRoutes(path, data)
}

// ParseRoutes decodes a control plane file for its route table only: the whole schema is
// decoded strictly (a misspelt key is an error), but only fleets[].listeners[].virtual_hosts
// are validated: a routes file for mesh mode needs no authz address, listener addresses or
// upstreams. Routes may leave upstream out.
func ParseRoutes(name string, data []byte) (*Config, error) {
	cfg := Default()
	if err := yamlfile.Decode(data, cfg); err != nil {
		if errors.Is(err, yamlfile.ErrEmpty) {
			return nil, fmt.Errorf("%s: empty routes file", name)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cfg.applyDefaults()
	if err := cfg.ValidateRoutes(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return cfg, nil
}

// ValidateRoutes checks the route table part of the config (fleets, listener names, virtual
// hosts and routes) and nothing else; upstream references are not required.
func (c *Config) ValidateRoutes() error {
	errs := &configcheck.Problems{}
	if len(c.Fleets) == 0 {
		errs.Addf("fleets: at least one fleet is required")
	}
	for i := range c.Fleets {
		f := &c.Fleets[i]
		at := entry(errs, "", "fleet", "fleets", f.Name, i)
		if len(f.Listeners) == 0 {
			errs.Addf("%s: listeners: at least one listener is required", at)
		}
		for j := range f.Listeners {
			l := &f.Listeners[j]
			lat := entry(errs, at, "listener", "listeners", l.Name, j)
			validateListenerRoutes(errs, lat, l, nil)
		}
	}
	return errs.Err()
}

// ValidateVirtualHosts checks virtual hosts given on their own (authz's inline routes:),
// as validateListenerRoutes checks one listener's.
func ValidateVirtualHosts(at string, vhosts []VirtualHost) error {
	errs := &configcheck.Problems{}
	validateListenerRoutes(errs, at, &Listener{VirtualHosts: vhosts}, nil)
	return errs.Err()
}

// ApplyRouteDefaults fills the defaults of virtual hosts given on their own (authz's inline
// routes:), as Parse does for a file's.
func ApplyRouteDefaults(vhosts []VirtualHost) {
	c := Config{Fleets: []Fleet{{Listeners: []Listener{{VirtualHosts: vhosts}}}}}
	c.applyDefaults()
}

// MeshVirtualHosts are the virtual hosts of every listener of every fleet, in file order, as
// authz's route table (mesh mode) and the mesh providers' manifests see them: one table, a
// virtual host repeated unchanged by several listeners (an HTTP and an HTTPS listener)
// counted once.
func (c *Config) MeshVirtualHosts() []VirtualHost {
	var vhosts []VirtualHost
	for _, f := range c.Fleets {
		for _, l := range f.Listeners {
		next:
			for _, vh := range l.VirtualHosts {
				for _, have := range vhosts {
					if reflect.DeepEqual(have, vh) {
						continue next
					}
				}
				vhosts = append(vhosts, vh)
			}
		}
	}
	return vhosts
}
