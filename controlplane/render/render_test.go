package render

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"

	egv1alpha1 "github.com/envoyproxy/gateway/api/v1alpha1"
	contourv1 "github.com/projectcontour/contour/apis/projectcontour/v1"
	contourv1alpha1 "github.com/projectcontour/contour/apis/projectcontour/v1alpha1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	istionetapi "istio.io/api/networking/v1alpha3"
	istiosecapi "istio.io/api/security/v1beta1"
	istionet "istio.io/client-go/pkg/apis/networking/v1alpha3"
	istiosec "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/scopegate/scopegate/controlplane/config"

	"github.com/scopegate/scopegate/internal/testing/golden"
)

var update = flag.Bool("update", false, "rewrite testdata/out from the renderer's output")

// The inputs: the mesh example the docs use, and the translator's every-matcher table
// (Istio only: its regex and case-insensitive routes are ordered differently by Gateway API
// and Contour, which TestProviderOrderRefused covers).
var goldens = []struct {
	in        string
	providers []string
}{
	{"../../examples/mesh/xds.yaml", []string{"istio", "istio-mesh-config", "envoy-gateway", "contour"}},
	{"../translate/testdata/in/matchers.yaml", []string{"istio"}},
}

func renderAs(t *testing.T, provider string, cfg *config.Config) []byte {
	t.Helper()
	o := Options{Namespace: "shop", AuthzService: "scopegate-authz.scopegate:9191", Selector: map[string]string{"istio": "ingressgateway"}, PeerCertificate: true}
	var out []byte
	var err error
	switch provider {
	case "istio":
		out, err = Istio(cfg, o)
	case "istio-mesh-config":
		out, err = IstioMeshConfig(cfg, o)
	case "envoy-gateway":
		out, err = EnvoyGateway(cfg, o)
	case "contour":
		out, err = Contour(cfg, o)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGolden renders each input for its providers and compares with testdata/out (go test
// ./controlplane/render -update rewrites them); every document decodes strictly with the
// provider's own API types.
func TestGolden(t *testing.T) {
	for _, g := range goldens {
		cfg, err := config.LoadRoutes(g.in)
		if err != nil {
			t.Fatal(err)
		}
		base := strings.TrimSuffix(filepath.Base(g.in), ".yaml")
		if base == "xds" {
			base = "mesh"
		}
		for _, p := range g.providers {
			t.Run(base+"/"+p, func(t *testing.T) {
				got := renderAs(t, p, cfg)
				decodeStrict(t, p, got)
				out := filepath.Join("testdata", "out", base+"."+p+".yaml")
				want, ok := golden.Want(t, out, got, *update, "go test ./controlplane/render -update")
				if ok && !bytes.Equal(got, want) {
					t.Errorf("%s differs from the rendering; review and run go test ./controlplane/render -update\n--- got:\n%s", out, got)
				}
			})
		}
	}
}

// scheme knows the Kubernetes kinds the renderings hold, from the providers' API packages.
func scheme(t *testing.T) *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{istiosec.AddToScheme, istionet.AddToScheme, gwv1.Install, gwv1beta1.Install,
		egv1alpha1.AddToScheme, contourv1.AddToScheme, contourv1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// decodeStrict decodes every document of a rendering with the upstream API types, refusing
// unknown fields: Kubernetes' strict deserializer for the objects, and protojson (which
// refuses unknown fields, where Istio's own JSON unmarshalers let them through) for Istio's
// specs and MeshConfig.
func decodeStrict(t *testing.T, provider string, out []byte) []runtime.Object {
	t.Helper()
	objs, err := decode(scheme(t), provider, out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func decode(s *runtime.Scheme, provider string, out []byte) ([]runtime.Object, error) {
	if provider == "istio-mesh-config" {
		var v struct {
			MeshConfig json.RawMessage `json:"meshConfig"`
		}
		if err := yaml.UnmarshalStrict(out, &v); err != nil {
			return nil, err
		}
		var mc meshv1alpha1.MeshConfig
		if err := protojson.Unmarshal(v.MeshConfig, &mc); err != nil {
			return nil, fmt.Errorf("MeshConfig: %w", err)
		}
		p := mc.GetExtensionProviders()[0]
		if g := p.GetEnvoyExtAuthzGrpc(); p.GetName() != ProviderName || g.GetService() != "scopegate-authz.scopegate.svc.cluster.local" || g.GetPort() != 9191 ||
			g.GetFailOpen() || g.GetTimeout().AsDuration().String() != "250ms" || g.GetStatusOnError() != "503" {
			return nil, fmt.Errorf("extension provider %v", p)
		}
		return nil, nil
	}
	dec := serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
	var objs []runtime.Object
	for i, doc := range bytes.Split(out, []byte("\n---\n")) {
		obj, gvk, err := dec.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w\n%s", i, err, doc)
		}
		// Istio's generated UnmarshalJSON lets unknown fields through: decode the spec again,
		// strictly.
		var spec proto.Message
		switch gvk.Kind {
		case "AuthorizationPolicy":
			spec = &istiosecapi.AuthorizationPolicy{}
		case "EnvoyFilter":
			spec = &istionetapi.EnvoyFilter{}
		}
		if spec != nil {
			var raw struct {
				Spec json.RawMessage `json:"spec"`
			}
			if err := yaml.Unmarshal(doc, &raw); err != nil {
				return nil, err
			}
			if err := protojson.Unmarshal(raw.Spec, spec); err != nil {
				return nil, fmt.Errorf("document %d: %s spec: %w", i, gvk.Kind, err)
			}
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// A misspelt field in any rendering fails the strict decoding: the test can fail.
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	cfg, err := config.LoadRoutes("../../examples/mesh/xds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := scheme(t)
	for p, field := range map[string]string{"istio": "hosts", "envoy-gateway": "contextExtensions", "contour": "authPolicy", "istio-mesh-config": "failOpen"} {
		good := renderAs(t, p, cfg)
		if _, err := decode(s, p, good); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		bad := bytes.Replace(good, []byte(" "+field+":"), []byte(" "+field+"x:"), 1)
		if bytes.Equal(bad, good) {
			t.Fatalf("%s: no %q to misspell", p, field)
		}
		if _, err := decode(s, p, bad); err == nil {
			t.Errorf("%s: a rendering with %q misspelt decoded", p, field)
		}
	}
}

// The contracts in the renderings are the ones the control plane writes: for every route,
// Envoy Gateway's contextExtensions and Contour's authPolicy.context equal RouteExtensions.
func TestRenderedContracts(t *testing.T) {
	cfg, err := config.LoadRoutes("../../examples/mesh/xds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{}
	for _, vh := range cfg.MeshVirtualHosts() {
		for i := range vh.Routes {
			want[vh.Routes[i].Name] = vh.RouteExtensions(&vh.Routes[i])
		}
	}
	seen := map[string]bool{}
	for _, obj := range decodeStrict(t, "envoy-gateway", renderAs(t, "envoy-gateway", cfg)) {
		sp, ok := obj.(*egv1alpha1.SecurityPolicy)
		if !ok {
			continue
		}
		got := map[string]string{}
		for _, ce := range sp.Spec.ExtAuth.ContextExtensions {
			got[ce.Name] = *ce.Value
		}
		if len(got) == 0 {
			continue // the metadata route's: authz answers it from its table
		}
		if !maps.Equal(got, want[got["route"]]) {
			t.Errorf("SecurityPolicy %s: %v, want %v", sp.Name, got, want[got["route"]])
		}
		seen[got["route"]] = true
	}
	for _, obj := range decodeStrict(t, "contour", renderAs(t, "contour", cfg)) {
		hp, ok := obj.(*contourv1.HTTPProxy)
		if !ok {
			continue
		}
		for _, r := range hp.Spec.Routes {
			if r.AuthPolicy == nil || r.AuthPolicy.Disabled {
				continue
			}
			if got := r.AuthPolicy.Context; !maps.Equal(got, want[got["route"]]) {
				t.Errorf("HTTPProxy %s: %v, want %v", hp.Name, got, want[got["route"]])
			}
		}
	}
	for name, ext := range want {
		if ext != nil && !seen[name] {
			t.Errorf("protected route %s has no SecurityPolicy", name)
		}
	}
}
