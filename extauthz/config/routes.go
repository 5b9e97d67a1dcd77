package config

import (
	"fmt"
	"os"

	xdsconfig "github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/controlplane/translate/names"
	"github.com/scopegate/scopegate/extauthz/routes"
	"github.com/scopegate/scopegate/internal/configcheck"
)

// What a request without route context extensions that matches no route gets (unmatched).
const (
	UnmatchedDeny      = "deny"
	UnmatchedTokenOnly = "token_only"
)

// InlineRoutes is a route table written in the authz config: virtual hosts exactly as a
// listener of the control plane's file has them.
type InlineRoutes struct {
	VirtualHosts []xdsconfig.VirtualHost `yaml:"virtual_hosts"`
}

// HasRouteTable reports whether authz matches routes itself (routes_file or routes).
func (c *Config) HasRouteTable() bool { return c.RoutesFile != "" || c.Routes != nil }

func (c *Config) applyRouteDefaults() {
	if c.Unmatched == "" {
		c.Unmatched = UnmatchedTokenOnly
		if c.HasRouteTable() {
			c.Unmatched = UnmatchedDeny
		}
	}
	if c.Routes != nil {
		xdsconfig.ApplyRouteDefaults(c.Routes.VirtualHosts)
	}
}

func (c *Config) validateRoutes(errs *configcheck.Problems) {
	if c.Unmatched != UnmatchedDeny && c.Unmatched != UnmatchedTokenOnly {
		errs.Add("unmatched", "%q is not %q or %q", c.Unmatched, UnmatchedDeny, UnmatchedTokenOnly)
	}
	switch {
	case c.RoutesFile != "" && c.Routes != nil:
		errs.Add("routes", "routes_file and routes are exclusive: one route table")
	case c.RoutesFile != "":
		if _, err := os.Stat(c.RoutesFile); err != nil {
			errs.Add("routes_file", "%v", err)
		}
	case c.Routes != nil:
		if len(c.Routes.VirtualHosts) == 0 {
			errs.Add("routes.virtual_hosts", "at least one virtual host is required")
		} else if err := xdsconfig.ValidateVirtualHosts("routes", c.Routes.VirtualHosts); err != nil {
			errs.Add("routes", "%v", err)
		} else if _, err := routes.New(TableInputs(c.Routes.VirtualHosts)); err != nil {
			errs.Add("routes", "%v", err)
		}
	}
}

// RouteTable compiles the configured route table (reading routes_file afresh: the server
// calls it again on every change of the file); nil without one.
func (c *Config) RouteTable() (*routes.Table, error) {
	switch {
	case c.RoutesFile != "":
		return LoadRouteTable(c.RoutesFile)
	case c.Routes != nil:
		return routes.New(TableInputs(c.Routes.VirtualHosts))
	}
	return nil, nil
}

// LoadRouteTable reads a control plane file (scopegate xds's) for its route table: the virtual
// hosts of every listener of every fleet, in file order, as one table. A virtual host that
// several listeners repeat unchanged (an HTTP and an HTTPS listener) counts once; a domain
// that two different virtual hosts serve is an error, since authz can't tell which listener a
// request came through.
func LoadRouteTable(path string) (*routes.Table, error) {
	cfg, err := xdsconfig.LoadRoutes(path)
	if err != nil {
		return nil, err
	}
	t, err := routes.New(TableInputs(cfg.MeshVirtualHosts()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w (authz merges the virtual hosts of every listener into one table)", path, err)
	}
	return t, nil
}

// TableInputs turns the control plane's virtual hosts into the route table's inputs, as
// translate turns them into Envoy's: the RFC 9728 metadata route first (authz answers the
// document itself), then each route with the context extensions the control plane would
// write for it (VirtualHost.RouteExtensions, the one builder of the route contract).
func TableInputs(vhosts []xdsconfig.VirtualHost) []routes.VirtualHost {
	out := make([]routes.VirtualHost, 0, len(vhosts))
	for i := range vhosts {
		vh := &vhosts[i]
		in := routes.VirtualHost{Name: vh.Name, Domains: vh.Domains}
		if m := vh.ResourceMetadata; m != nil {
			in.Routes = append(in.Routes, routes.Route{
				Name: names.MetadataRoute(vh.Name),
				Path: routes.PathMatch{Kind: routes.PathExact, Value: m.DocumentPath()},
				Document: &routes.Document{Body: vh.MetadataDocument(), ContentType: "application/json",
					CacheControl: m.CacheControl()},
			})
		}
		for j := range vh.Routes {
			r := &vh.Routes[j]
			in.Routes = append(in.Routes, routes.Route{
				Name:       r.Name,
				Path:       pathMatch(r.Match),
				Methods:    r.Match.Methods,
				Headers:    headerMatches(r.Match.Headers),
				Extensions: vh.RouteExtensions(r),
			})
		}
		out = append(out, in)
	}
	return out
}

func pathMatch(m xdsconfig.Match) routes.PathMatch {
	kind, value := m.PathMatch()
	pm := routes.PathMatch{Value: value, IgnoreCase: !m.IsCaseSensitive()}
	switch kind {
	case xdsconfig.PathExact:
		pm.Kind = routes.PathExact
	case xdsconfig.PathPrefix:
		pm.Kind = routes.PathPrefix
	case xdsconfig.PathSeparatedPrefix:
		pm.Kind = routes.PathSeparatedPrefix
	case xdsconfig.PathRegex:
		pm.Kind, pm.IgnoreCase = routes.PathRegex, false
	}
	return pm
}

func headerMatches(hs []xdsconfig.HeaderMatch) []routes.HeaderMatch {
	var out []routes.HeaderMatch
	for _, h := range hs {
		kind, value := h.Kind()
		hm := routes.HeaderMatch{Name: h.Name, Value: value, IgnoreCase: h.IgnoreCase, Invert: h.Invert}
		switch kind {
		case xdsconfig.StringExact:
			hm.Kind = routes.StringExact
		case xdsconfig.StringPrefix:
			hm.Kind = routes.StringPrefix
		case xdsconfig.StringSuffix:
			hm.Kind = routes.StringSuffix
		case xdsconfig.StringContains:
			hm.Kind = routes.StringContains
		case xdsconfig.StringRegex:
			hm.Kind = routes.StringRegex
		case xdsconfig.StringPresent:
			hm.Kind, hm.Present, hm.Value = routes.StringPresent, value == "true", ""
		}
		out = append(out, hm)
	}
	return out
}
