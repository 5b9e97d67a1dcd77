package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/scopegate/scopegate/controlplane/bootstrap"
)

func init() { subcommands = append(subcommands, newBootstrapCmd) }

func newBootstrapCmd() *cobra.Command {
	var o bootstrap.Options
	var outFile string
	cmd := &cobra.Command{
		Use:   "bootstrap --node-id ID --fleet NAME --xds HOST:PORT [--admin-port N] [--delta] [--xds-ca FILE [--xds-cert FILE --xds-key FILE] [--xds-server-name NAME]] [--ready-port N] [--out FILE]",
		Short: "Print an Envoy bootstrap (YAML) that gets its configuration from scopegate xds over ADS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := bootstrap.Render(o)
			if err != nil {
				return err
			}
			if outFile != "" {
				// For init containers without a shell to redirect stdout.
				return os.WriteFile(outFile, out, 0o644)
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&o.NodeID, "node-id", "", "Envoy node id (unique per Envoy)")
	cmd.Flags().StringVar(&o.Fleet, "fleet", "", "fleet name: the node.cluster the control plane selects a config by")
	cmd.Flags().StringVar(&o.XDS, "xds", "", "control plane ADS address, host:port")
	cmd.Flags().IntVar(&o.AdminPort, "admin-port", bootstrap.DefaultAdminPort, "Envoy admin port (bound to 127.0.0.1)")
	cmd.Flags().BoolVar(&o.Delta, "delta", false, "use incremental (delta) xDS instead of state-of-the-world")
	cmd.Flags().StringVar(&o.XDSCA, "xds-ca", "", "TLS to the control plane: CA file (on the Envoy host) that verifies it")
	cmd.Flags().StringVar(&o.XDSCert, "xds-cert", "", "Envoy's client certificate file for the control plane (URI SAN spiffe://<trust domain>/fleet/<fleet>)")
	cmd.Flags().StringVar(&o.XDSKey, "xds-key", "", "the client certificate's private key file")
	cmd.Flags().StringVar(&o.XDSServerName, "xds-server-name", "", "SNI and SAN expected of the control plane's certificate (default: the host of --xds)")
	cmd.Flags().IntVar(&o.ReadyPort, "ready-port", 0, "add a listener on 0.0.0.0:PORT answering GET /ready (readiness probes; 0: none)")
	cmd.Flags().StringVar(&outFile, "out", "", "write the bootstrap to this file instead of stdout")
	for _, f := range []string{"node-id", "fleet", "xds"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}
