package translate

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthz "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/controlplane/translate/names"
	"github.com/scopegate/scopegate/internal/contract"
)

func load(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// build translates cfg, failing the test on an error.
func build(t *testing.T, cfg *config.Config) map[string]*Fleet {
	t.Helper()
	fleets, err := Build(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fleets
}

// TestDeterministic: building the same config twice gives the same versions, so a reload of
// an unchanged file pushes nothing.
func TestDeterministic(t *testing.T) {
	cfg := load(t, "testdata/in/fleets.yaml")
	a := build(t, cfg)
	for i := 0; i < 5; i++ {
		b := build(t, cfg)
		for name := range a {
			for _, typ := range Types {
				if a[name].Versions[typ] != b[name].Versions[typ] {
					t.Fatalf("fleet %s %s version changed between builds", name, typ)
				}
			}
		}
	}
}

// TestVersionsChangePerType: changing a route changes only the route version.
func TestVersionsChangePerType(t *testing.T) {
	cfg := load(t, "testdata/in/basic.yaml")
	before := build(t, cfg)
	cfg.Fleets[0].Listeners[0].VirtualHosts[0].Routes[0].Scopes = []string{"orders:list"}
	after := build(t, cfg)
	for _, typ := range Types {
		changed := before["edge"].Versions[typ] != after["edge"].Versions[typ]
		if changed != (typ == resource.RouteType) {
			t.Errorf("%s: changed=%v", typ, changed)
		}
	}
}

// TestComposeConfigs: the demo and local configs the compose setup mounts translate cleanly
// (the demo's /certs files are substituted by the test certificate).
func TestComposeConfigs(t *testing.T) {
	// The demo's /certs (compose) and dev-certs (local) files, made at start-up, stand in as
	// the test certificate.
	testCert := map[string]string{"tls.crt": "testdata/certs/tls.crt", "tls.key": "testdata/certs/tls.key",
		"ca.crt": "testdata/certs/tls.crt", "authz-client.crt": "testdata/certs/tls.crt", "authz-client.key": "testdata/certs/tls.key"}
	read := func(p string) ([]byte, error) {
		if d := filepath.Base(filepath.Dir(p)); d == "certs" || d == "dev-certs" {
			if sub, ok := testCert[filepath.Base(p)]; ok {
				return os.ReadFile(sub)
			}
		}
		return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	}
	for _, tt := range []struct {
		file    string
		secrets int
	}{{"xds.yaml", 3}, {"xds.local.yaml", 2}} {
		t.Run(tt.file, func(t *testing.T) {
			cfg := load(t, filepath.Join("..", "..", "compose", tt.file))
			fleets, err := Build(context.Background(), cfg, read)
			if err != nil {
				t.Fatal(err)
			}
			edge := fleets["edge"]
			if edge == nil || len(fleets) != 1 {
				t.Fatalf("fleets = %v, want edge only", fleets)
			}
			if got := len(edge.Resources[resource.SecretType]); got != tt.secrets {
				t.Errorf("secrets = %d, want %d", got, tt.secrets)
			}
			rc := edge.Resources[resource.RouteType][0].(*route.RouteConfiguration)
			want := map[string]string{"orders-read": "orders:read", "orders-write": "orders:write", "orders-delete": "orders:write", "admin": "admin"}
			for _, r := range rc.GetVirtualHosts()[0].GetRoutes() {
				per := &extauthz.ExtAuthzPerRoute{}
				if err := r.GetTypedPerFilterConfig()[names.ExtAuthzFilter].UnmarshalTo(per); err != nil {
					t.Fatal(err)
				}
				if r.GetName() == "health" || r.GetName() == "api.resource-metadata" {
					if !per.GetDisabled() {
						t.Errorf("%s: ext_authz not disabled", r.GetName())
					}
					continue
				}
				ext := per.GetCheckSettings().GetContextExtensions()
				if !strings.HasSuffix(ext[contract.ExtResourceMetadata], "/.well-known/oauth-protected-resource") {
					t.Errorf("%s: no resource_metadata URL in %v", r.GetName(), ext)
				}
				if ext[contract.ExtRoute] != r.GetName() || ext[contract.ExtScopes] != want[r.GetName()] {
					t.Errorf("%s: context extensions %v", r.GetName(), ext)
				}
				// The demo's step-up route: a second factor in the last five minutes.
				if stepUp := r.GetName() == "orders-delete"; stepUp != (ext[contract.ExtACRValues] == "urn:scopegate:demo:mfa" && ext[contract.ExtMaxAge] == "300") {
					t.Errorf("%s: step-up extensions %v", r.GetName(), ext)
				}
			}
		})
	}
}

// TestTLSFileErrors: certificate problems, on a listener or on the authz hop (its CA and
// client certificate), are refused before anything is pushed, with the listener or field and
// the file named. Files the config names before the case's change are read from disk; the
// case's own come from files, and any other does not exist.
func TestTLSFileErrors(t *testing.T) {
	cert, _ := os.ReadFile("testdata/certs/tls.crt")
	key, _ := os.ReadFile("testdata/certs/tls.key")
	listenerTLS := func(cfg *config.Config) { cfg.Fleets[0].Listeners[0].TLS = &config.TLS{CertFile: "c", KeyFile: "k"} }
	authzTLS := func(cfg *config.Config) { cfg.Authz.TLS = &config.AuthzTLS{CAFile: "ca", CertFile: "c", KeyFile: "k"} }
	tests := []struct {
		name    string
		in      string
		set     func(*config.Config)
		files   map[string][]byte
		wantErr string
	}{
		{"missing cert", "tls.yaml", listenerTLS, map[string][]byte{"k": key}, `fleet "edge": listener "https": tls: cert_file: open c: file does not exist`},
		{"missing key", "tls.yaml", listenerTLS, map[string][]byte{"c": cert}, `listener "https": tls: key_file: open k: file does not exist`},
		{"key is a cert", "tls.yaml", listenerTLS, map[string][]byte{"c": cert, "k": cert}, `listener "https": tls: c and k:`},
		{"garbage cert", "tls.yaml", listenerTLS, map[string][]byte{"c": []byte("nope"), "k": key}, `listener "https": tls: c and k: tls: failed to find any PEM data in certificate input`},
		{"authz missing CA", "mtls.yaml", authzTLS, map[string][]byte{"c": cert, "k": key}, "authz: tls: ca_file: open ca: file does not exist"},
		{"authz CA without a certificate", "mtls.yaml", authzTLS, map[string][]byte{"ca": key, "c": cert, "k": key}, "authz: tls: ca_file ca: no PEM certificate in it"},
		{"authz client key mismatch", "mtls.yaml", authzTLS, map[string][]byte{"ca": cert, "c": cert, "k": cert}, "authz: tls: c and k:"},
		{"authz missing client key", "mtls.yaml", authzTLS, map[string][]byte{"ca": cert, "c": cert}, "authz: tls: key_file: open k: file does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := load(t, filepath.Join("testdata", "in", tt.in))
			onDisk := map[string]bool{}
			if l := cfg.Fleets[0].Listeners[0]; l.TLS != nil {
				onDisk[l.TLS.CertFile], onDisk[l.TLS.KeyFile] = true, true
			}
			tt.set(cfg)
			read := func(p string) ([]byte, error) {
				if b, ok := tt.files[p]; ok {
					return b, nil
				}
				if onDisk[p] {
					return os.ReadFile(p)
				}
				return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
			}
			_, err := Build(context.Background(), cfg, read)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestAuthzTLSSecretsReferenced: the authz secrets are referenced by the authz cluster, so an
// SDS request for them is answered in ADS mode; dropping the transport socket leaves them
// unreferenced, which validation refuses.
func TestAuthzTLSSecretsReferenced(t *testing.T) {
	fleets := build(t, load(t, "testdata/in/mtls.yaml"))
	f := fleets["edge"]
	var secretNames []string
	for _, s := range f.Resources[resource.SecretType] {
		secretNames = append(secretNames, nameOf(s))
	}
	if want := "https.tls scopegate_authz.ca scopegate_authz.client"; strings.Join(secretNames, " ") != want {
		t.Fatalf("secrets = %v, want %s", secretNames, want)
	}
	for _, c := range f.Resources[resource.ClusterType] {
		if c.(*cluster.Cluster).GetName() == names.AuthzCluster {
			c.(*cluster.Cluster).TransportSocket = nil
		}
	}
	err := f.validate()
	for _, want := range []string{`secret "scopegate_authz.ca" is not referenced`, `secret "scopegate_authz.client" is not referenced`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v, want it to contain %q", err, want)
		}
	}
}

// TestValidateDescendsIntoAny: a broken typed config deep inside an Any is caught, with the
// resource named.
func TestValidateDescendsIntoAny(t *testing.T) {
	cfg := load(t, "testdata/in/basic.yaml")
	fleets := build(t, cfg)
	f := fleets["edge"]

	// Break the HCM inside the listener: empty stat_prefix violates min_len.
	l := f.Resources[resource.ListenerType][0].(*listener.Listener)
	m := &hcm.HttpConnectionManager{}
	tc := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig()
	if err := tc.UnmarshalTo(m); err != nil {
		t.Fatal(err)
	}
	m.StatPrefix = ""
	broken, _ := anypb.New(m)
	l.FilterChains[0].Filters[0].ConfigType = &listener.Filter_TypedConfig{TypedConfig: broken}
	err := f.validate()
	if err == nil || !strings.Contains(err.Error(), `listener "public" > HttpConnectionManager: invalid HttpConnectionManager.StatPrefix`) {
		t.Fatalf("error = %v", err)
	}

	// An Any whose type is not linked in is refused, not skipped.
	l.FilterChains[0].Filters[0].ConfigType = &listener.Filter_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/not.linked.In"}}
	err = f.validate()
	if err == nil || !strings.Contains(err.Error(), "typed config type.googleapis.com/not.linked.In") {
		t.Fatalf("error = %v", err)
	}
}

// TestReferences: dangling and missing references are refused with their place named.
func TestReferences(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(f *Fleet)
		wantErr string
	}{
		{"route to missing cluster", func(f *Fleet) {
			rc := f.Resources[resource.RouteType][0].(*route.RouteConfiguration)
			rc.VirtualHosts[0].Routes[0].GetRoute().ClusterSpecifier = &route.RouteAction_Cluster{Cluster: "ghost"}
		}, `route configuration "https": cluster "ghost" does not exist`},
		{"listener to missing secret", func(f *Fleet) {
			f.Resources[resource.SecretType] = nil
		}, `listener "https" > DownstreamTlsContext: secret "https.tls" does not exist`},
		{"unreferenced secret", func(f *Fleet) {
			l := f.Resources[resource.ListenerType][0].(*listener.Listener)
			l.FilterChains[0].TransportSocket = nil
		}, `secret "https.tls" is not referenced by any listener`},
		{"authz cluster missing", func(f *Fleet) {
			f.Resources[resource.ClusterType] = f.Resources[resource.ClusterType][:1]
		}, `cluster "scopegate_authz" does not exist`},
		{"endpoints without cluster", func(f *Fleet) {
			f.Resources[resource.EndpointType] = append(f.Resources[resource.EndpointType], loadAssignment(&Cluster{Name: "orphan", Endpoints: []Endpoint{{Host: "10.0.0.1", Port: 1}}}))
		}, "snapshot is not consistent"},
		{"listener to missing route configuration", func(f *Fleet) {
			f.Resources[resource.RouteType] = []types.Resource{}
		}, "snapshot is not consistent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fleets := build(t, load(t, "testdata/in/tls.yaml"))
			f := fleets["edge"]
			tt.edit(f)
			err := f.validate()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestBuildCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, load(t, "testdata/in/basic.yaml"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

// TestEncodedResources: every resource's encoding (what the xDS server sends) decodes to the
// translated resource, in the same order, and the content versions hash exactly those bytes
// (one marshalling per version serves both).
func TestEncodedResources(t *testing.T) {
	fleets := build(t, load(t, "testdata/in/fleets.yaml"))
	f := fleets["edge"]
	for _, typ := range Types {
		if len(f.Encoded[typ]) != len(f.Resources[typ]) {
			t.Fatalf("%s: %d encoded, %d resources", typ, len(f.Encoded[typ]), len(f.Resources[typ]))
		}
		for i, r := range f.Resources[typ] {
			enc := f.Encoded[typ][i]
			if enc.Name != nameOf(r) {
				t.Errorf("%s #%d: encoded %q, resource %q", typ, i, enc.Name, nameOf(r))
			}
			back := r.ProtoReflect().New().Interface()
			if err := proto.Unmarshal(enc.Bytes, back); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(back, r) {
				t.Errorf("%s %q: decoded encoding differs:\n%v\nwant\n%v", typ, enc.Name, back, r)
			}
		}
	}
	_, versions, err := encode(f.Resources)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(versions, f.Versions) {
		t.Errorf("versions %v, re-encoded %v", f.Versions, versions)
	}
	if len(f.Resources[resource.RouteType]) == 0 {
		t.Fatal("fixture has no route configuration")
	}
}
