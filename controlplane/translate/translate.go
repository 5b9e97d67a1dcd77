// Package translate turns a validated config into Envoy xDS resources, one set per fleet, and
// checks them the way Envoy will: every message and every typed config packed in an Any passes
// ValidateAll, every reference resolves, and the snapshot is Consistent.
//
// Each Envoy message comes from one small builder function (cluster, endpoints, listener,
// HTTP connection manager, ext_authz, route, secret), so a change to the emitted config is a
// change to one function and shows in the golden files under testdata.
package translate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/scopegate/scopegate/controlplane/config"
)

// ReadFileFunc reads a certificate or key file; os.ReadFile in production.
type ReadFileFunc func(path string) ([]byte, error)

// Fleet is the translated, validated configuration of one fleet.
type Fleet struct {
	Name string
	// Resources holds every resource by type URL (resource.ClusterType, ...), sorted by name.
	Resources map[resource.Type][]types.Resource
	// Versions holds each type's content hash: equal resources give equal versions, so a
	// type whose resources did not change is not pushed again.
	Versions map[resource.Type]string
	// Encoded holds every resource's encoding by type URL, in the order of Resources.
	Encoded map[resource.Type][]Encoded
}

// Types are the resource types a fleet's snapshot carries, in ADS push order.
var Types = []resource.Type{
	resource.ClusterType,
	resource.EndpointType,
	resource.ListenerType,
	resource.RouteType,
	resource.SecretType,
}

// Build translates every fleet of cfg. It fails as a whole: on any error no fleet is returned.
func Build(ctx context.Context, cfg *config.Config, readFile ReadFileFunc) (map[string]*Fleet, error) {
	if readFile == nil {
		readFile = os.ReadFile
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	files := newFileCache(readFile)
	// authz.tls's client certificate goes to every fleet: refuse a fleet identity once,
	// before the fleets (their own authz_tls are checked with each).
	if t := cfg.Authz.TLS; t != nil && t.CertFile != "" {
		if err := notAFleetIdentity(t.CertFile, "authz.tls.cert_file", files); err != nil {
			return nil, err
		}
	}
	out := make(map[string]*Fleet, len(cfg.Fleets))
	var errs []error
	for i := range cfg.Fleets {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := buildFleet(cfg, &cfg.Fleets[i], files)
		if err != nil {
			errs = append(errs, fmt.Errorf("fleet %q: %w", cfg.Fleets[i].Name, err))
			continue
		}
		out[f.Name] = f
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func buildFleet(cfg *config.Config, f *config.Fleet, files *fileCache) (_ *Fleet, err error) {
	defer func() {
		if r := recover(); r != nil {
			pe, ok := r.(packError)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("packing a typed config: %w", pe.err)
		}
	}()
	var (
		clusters  []types.Resource
		endpoints []types.Resource
		listeners []types.Resource
		routes    []types.Resource
		secrets   []types.Resource
		errs      []error
	)

	authz := authzUpstream(cfg.Authz)
	c, eds := upstreamCluster(authz, true)
	if cfg.Authz.TLS != nil {
		ts, s, err := authzTLS(cfg, f, files)
		if err != nil {
			return nil, err
		}
		c.TransportSocket = ts
		for _, x := range s {
			secrets = append(secrets, x)
		}
	}
	clusters = append(clusters, c)
	if eds != nil {
		endpoints = append(endpoints, eds)
	}

	used := map[string]bool{}
	for li := range f.Listeners {
		l := &f.Listeners[li]
		var secretName string
		if l.TLS.Enabled() {
			s, err := listenerSecret(l, files)
			if err != nil {
				errs = append(errs, fmt.Errorf("listener %q: %w", l.Name, err))
				continue
			}
			secrets = append(secrets, s)
			secretName = s.GetName()
			if l.TLS.ClientCAFile != "" {
				ca, err := caSecret(config.ClientCASecretName(l.Name), l.TLS.ClientCAFile, files)
				if err != nil {
					errs = append(errs, fmt.Errorf("listener %q: tls: client_%w", l.Name, err))
					continue
				}
				secrets = append(secrets, ca)
			}
		}
		listeners = append(listeners, httpListener(l, cfg.Authz, secretName))
		routes = append(routes, routeConfiguration(l, cfg))
		for _, vh := range l.VirtualHosts {
			for _, r := range vh.Routes {
				used[r.Upstream] = true
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for i := range cfg.Upstreams {
		u := &cfg.Upstreams[i]
		if !used[u.Name] {
			continue
		}
		c, eds := upstreamCluster(u, false)
		clusters = append(clusters, c)
		if eds != nil {
			endpoints = append(endpoints, eds)
		}
	}

	fl := &Fleet{
		Name: f.Name,
		Resources: map[resource.Type][]types.Resource{
			resource.ClusterType:  sortByName(clusters),
			resource.EndpointType: sortByName(endpoints),
			resource.ListenerType: sortByName(listeners),
			resource.RouteType:    sortByName(routes),
			resource.SecretType:   sortByName(secrets),
		},
	}
	if err := fl.validate(); err != nil {
		return nil, err
	}
	encoded, versions, err := encode(fl.Resources)
	if err != nil {
		return nil, err
	}
	fl.Encoded, fl.Versions = encoded, versions
	return fl, nil
}

type named interface{ GetName() string }

func nameOf(r types.Resource) string {
	if n, ok := r.(named); ok {
		return n.GetName()
	}
	if c, ok := r.(interface{ GetClusterName() string }); ok {
		return c.GetClusterName()
	}
	return ""
}

func sortByName(rs []types.Resource) []types.Resource {
	sort.Slice(rs, func(i, j int) bool { return nameOf(rs[i]) < nameOf(rs[j]) })
	return rs
}

// fileCache reads each file once per Build, so one certificate shared by listeners is read
// once and every listener sees the same bytes.
type fileCache struct {
	read  ReadFileFunc
	files map[string][]byte
}

func newFileCache(read ReadFileFunc) *fileCache {
	return &fileCache{read: read, files: map[string][]byte{}}
}

func (c *fileCache) get(path string) ([]byte, error) {
	if b, ok := c.files[path]; ok {
		return b, nil
	}
	b, err := c.read(path)
	if err != nil {
		return nil, err
	}
	c.files[path] = b
	return b, nil
}
