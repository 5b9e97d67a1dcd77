package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	xdsconfig "github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/controlplane/render"
)

func init() { subcommands = append(subcommands, newRenderCmd) }

func newRenderCmd() *cobra.Command {
	var (
		path       string
		o          render.Options
		selector   []string
		meshConfig bool
		peerCert   string
	)
	cmd := &cobra.Command{
		Use:   "render istio|envoy-gateway|contour --config xds.yaml [--namespace NS] [--authz-service NAME.NS:PORT]",
		Short: "Write the manifests that make Istio, Envoy Gateway or Contour call scopegate authz (mesh mode)",
		Long: `Render, from the control plane file's routes (the file scopegate xds reads; authz's routes_file
reads the same), the manifests of another control plane (docs/mesh.md):

  istio          the AuthorizationPolicy (action CUSTOM, provider "scopegate") sending the
                 protected routes' requests to authz, and the EnvoyFilter that adds the client
                 certificate (--peer-certificate); --mesh-config prints istiod's extension
                 provider instead
  envoy-gateway  an HTTPRoute per route and a SecurityPolicy per protected route whose extAuth
                 carries the route's contract as contextExtensions
  contour        the ExtensionService and an HTTPProxy per host name whose routes carry the
                 route's contract as authPolicy.context

The YAML goes to standard output (kubectl apply -f -).`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"istio", "envoy-gateway", "contour"},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := xdsconfig.LoadRoutes(path)
			if err != nil {
				return err
			}
			for _, kv := range selector {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usageErr(fmt.Errorf("--selector %q: want key=value", kv))
				}
				if o.Selector == nil {
					o.Selector = map[string]string{}
				}
				o.Selector[k] = v
			}
			switch peerCert {
			case "auto":
				o.PeerCertificate = requestsClientCertificates(cfg)
			case "true", "false":
				o.PeerCertificate = peerCert == "true"
			default:
				return usageErr(fmt.Errorf("--peer-certificate %q: want auto, true or false", peerCert))
			}
			var out []byte
			switch args[0] {
			case "istio":
				if meshConfig {
					out, err = render.IstioMeshConfig(cfg, o)
				} else {
					out, err = render.Istio(cfg, o)
				}
			case "envoy-gateway":
				out, err = render.EnvoyGateway(cfg, o)
			case "contour":
				out, err = render.Contour(cfg, o)
			default:
				return usageErr(fmt.Errorf("unknown provider %q: want istio, envoy-gateway or contour", args[0]))
			}
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&path, "config", "", "control plane file (scopegate xds's) whose routes to render")
	fl.StringVar(&o.Namespace, "namespace", render.DefaultNamespace, "namespace of the rendered policies and routes")
	fl.StringVar(&o.AuthzService, "authz-service", render.DefaultAuthzService, "scopegate authz's Service, NAME[.NAMESPACE]:PORT")
	fl.StringArrayVar(&selector, "selector", nil, "istio: workload label key=value the policy applies to (repeatable), e.g. istio=ingressgateway")
	fl.StringVar(&peerCert, "peer-certificate", "auto", "istio: render the EnvoyFilter sending the client certificate to authz (auto: when a listener has tls.client_ca_file)")
	fl.BoolVar(&meshConfig, "mesh-config", false, "istio: print istiod's extensionProviders values instead of the manifests")
	fl.StringVar(&o.Gateway, "gateway", render.DefaultGateway, "envoy-gateway: the HTTPRoutes' parent Gateway, NAME[/NAMESPACE]")
	fl.StringVar(&o.TLSSecret, "tls-secret", render.DefaultTLSSecret, "contour: each HTTPProxy's TLS Secret ({vhost} is the virtual host's name)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// requestsClientCertificates reports whether a listener of cfg asks for client certificates
// (RFC 8705 certificate-bound tokens need them forwarded to authz).
func requestsClientCertificates(cfg *xdsconfig.Config) bool {
	for _, f := range cfg.Fleets {
		for _, l := range f.Listeners {
			if l.TLS != nil && l.TLS.ClientCAFile != "" {
				return true
			}
		}
	}
	return false
}
