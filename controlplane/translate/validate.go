package translate

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	// Link in every extension type the builders pack into an Any, so validation (and
	// protojson in tests and tools) can resolve them.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// validate checks every resource the way Envoy does on load: ValidateAll on the resource and
// on every typed config inside it (ValidateAll does not descend into Any, so each Any is
// unpacked, validated and walked in turn), then every cross-resource reference, then the
// snapshot's own Consistent check.
func (f *Fleet) validate() error {
	refs := newReferences()
	var errs []error
	for _, typ := range Types {
		for _, r := range f.Resources[typ] {
			at := fmt.Sprintf("%s %q", shortType(typ), nameOf(r))
			errs = append(errs, validateDeep(r, at, refs)...)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := refs.check(f.Resources); err != nil {
		return err
	}
	snap, err := f.snapshot(nil)
	if err != nil {
		return err
	}
	if err := snap.Consistent(); err != nil {
		return fmt.Errorf("snapshot is not consistent: %w", err)
	}
	return nil
}

type validator interface{ ValidateAll() error }

// validateDeep validates m and every message below it, unpacking Anys.
func validateDeep(m proto.Message, at string, refs *references) []error {
	var errs []error
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", at, err))
		}
	} else {
		errs = append(errs, fmt.Errorf("%s: %s has no validation rules linked in", at, m.ProtoReflect().Descriptor().FullName()))
	}
	return append(errs, walk(m.ProtoReflect(), at, refs)...)
}

func walk(m protoreflect.Message, at string, refs *references) []error {
	var errs []error
	switch x := m.Interface().(type) {
	case *anypb.Any:
		inner, err := x.UnmarshalNew()
		if err != nil {
			return []error{fmt.Errorf("%s: typed config %s: %w", at, x.GetTypeUrl(), err)}
		}
		return validateDeep(inner, at+" > "+string(inner.ProtoReflect().Descriptor().Name()), refs)
	case *route.RouteAction:
		refs.clusters[x.GetCluster()] = append(refs.clusters[x.GetCluster()], at)
	case *core.GrpcService_EnvoyGrpc:
		refs.clusters[x.GetClusterName()] = append(refs.clusters[x.GetClusterName()], at)
	case *tlsv3.SdsSecretConfig:
		refs.secrets[x.GetName()] = append(refs.secrets[x.GetName()], at)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				errs = append(errs, walk(l.Get(i).Message(), at, refs)...)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				errs = append(errs, walk(mv.Message(), at, refs)...)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			errs = append(errs, walk(v.Message(), at, refs)...)
		}
		return true
	})
	return errs
}

// references are the names resources point at, with where each reference was found.
type references struct {
	clusters map[string][]string
	secrets  map[string][]string
}

func newReferences() *references {
	return &references{clusters: map[string][]string{}, secrets: map[string][]string{}}
}

// check finds dangling references (a route to a missing cluster, a listener to a missing
// secret) and unreferenced secrets, which in ADS mode would stall every SDS answer.
// Consistent covers EDS and RDS.
func (r *references) check(res map[resource.Type][]types.Resource) error {
	have := func(typ resource.Type) map[string]bool {
		m := map[string]bool{}
		for _, x := range res[typ] {
			m[nameOf(x)] = true
		}
		return m
	}
	var errs []error
	clusters, secrets := have(resource.ClusterType), have(resource.SecretType)
	for _, name := range sortedKeys(r.clusters) {
		if !clusters[name] {
			errs = append(errs, fmt.Errorf("%s: cluster %q does not exist", strings.Join(r.clusters[name], ", "), name))
		}
	}
	for _, name := range sortedKeys(r.secrets) {
		if !secrets[name] {
			errs = append(errs, fmt.Errorf("%s: secret %q does not exist", strings.Join(r.secrets[name], ", "), name))
		}
	}
	for _, name := range sortedKeys(secrets) {
		if _, ok := r.secrets[name]; !ok {
			errs = append(errs, fmt.Errorf("secret %q is not referenced by any listener or cluster", name))
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func shortType(typ resource.Type) string {
	switch typ {
	case resource.ClusterType:
		return "cluster"
	case resource.EndpointType:
		return "endpoints"
	case resource.ListenerType:
		return "listener"
	case resource.RouteType:
		return "route configuration"
	case resource.SecretType:
		return "secret"
	}
	return typ
}

// ValidateMessage checks m as Envoy would on load: ValidateAll on m and on every typed
// config packed in an Any below it (unpacked, so its type must be linked in). at prefixes
// errors.
func ValidateMessage(m proto.Message, at string) error {
	return errors.Join(validateDeep(m, at, newReferences())...)
}
