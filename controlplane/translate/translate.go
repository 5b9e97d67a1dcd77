// Package translate turns a validated config into Envoy xDS resources, one set per fleet, and
// checks them the way Envoy will: every message and every typed config packed in an Any passes
// ValidateAll, every reference resolves, and the snapshot is Consistent.
//
// It works in two steps. resolve (resolve.go) makes each fleet's Model (model.go) from the
// config once: names assigned (package names holds every one), upstreams found and their
// endpoints parsed, certificates and CAs read and checked (files.go), each protected route's
// contract computed. Then each Envoy message comes from one small builder that reads only the
// model (clusters.go, listeners.go, routes.go, metadata.go, secrets.go, authztls.go), so a
// change to the emitted config is a change to one function and shows in the golden files
// under testdata/out, one file per case and resource type.
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

func buildFleet(cfg *config.Config, f *config.Fleet, files *fileCache) (*Fleet, error) {
	m, err := resolve(cfg, f, files)
	if err != nil {
		return nil, err
	}
	res, err := resources(m)
	if err != nil {
		return nil, err
	}
	fl := &Fleet{Name: m.Fleet, Resources: res}
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

// resources builds every Envoy resource of the model, each type sorted by name.
func resources(m *Model) (_ map[resource.Type][]types.Resource, err error) {
	defer func() {
		if r := recover(); r != nil {
			pe, ok := r.(packError)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("packing a typed config: %w", pe.err)
		}
	}()
	var clusters, endpoints, listeners, routes, secrets []types.Resource
	for i := range m.Clusters {
		c, eds := clusterResources(&m.Clusters[i])
		clusters = append(clusters, c)
		if eds != nil {
			endpoints = append(endpoints, eds)
		}
	}
	for i := range m.Listeners {
		l := &m.Listeners[i]
		listeners = append(listeners, httpListener(l, &m.ExtAuthz))
		routes = append(routes, routeConfiguration(l))
	}
	for i := range m.Secrets {
		secrets = append(secrets, secret(&m.Secrets[i]))
	}
	return map[resource.Type][]types.Resource{
		resource.ClusterType:  sortByName(clusters),
		resource.EndpointType: sortByName(endpoints),
		resource.ListenerType: sortByName(listeners),
		resource.RouteType:    sortByName(routes),
		resource.SecretType:   sortByName(secrets),
	}, nil
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
