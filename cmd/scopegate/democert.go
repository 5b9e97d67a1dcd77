package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/scopegate/scopegate/demo/democert"
	"github.com/scopegate/scopegate/internal/spiffe"
)

func init() { subcommands = append(subcommands, newDemoCertCmd) }

func newDemoCertCmd() *cobra.Command {
	var out string
	var hosts []string
	var validity time.Duration
	var set democert.SetOptions
	cmd := &cobra.Command{
		Use:   "demo-cert --out DIR",
		Short: "Write the demo's TLS certificates: the edge's, a demo CA and one per internal hop (NOT FOR PRODUCTION)",
		Long: "Write into DIR, each key 0600, replacing earlier files atomically:\n" +
			"  tls.crt, tls.key        the edge listener's self-signed certificate (--hosts)\n" +
			"  ca.crt                  a new demo CA (its key is never written: a new CA at every run)\n" +
			"  authz.crt, authz.key    scopegate authz: DNS authz, localhost, 127.0.0.1; spiffe://<trust domain>/authz\n" +
			"  xds.crt, xds.key        scopegate xds: DNS xds, localhost, 127.0.0.1; spiffe://<trust domain>/xds\n" +
			"  envoy.crt, envoy.key    Envoy's client certificate for xds: spiffe://<trust domain>/fleet/<fleet>\n" +
			"  authz-client.crt, .key  Envoy's client certificate for authz, pushed by xds (SDS): spiffe://<trust domain>/authz-client",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			certPath, keyPath, err := democert.Write(out, democert.Options{Hosts: hosts, Validity: validity})
			if err != nil {
				return err
			}
			set.Validity = validity
			if _, err := democert.WriteSet(out, set); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote %s and %s for %v, valid for %s\n", certPath, keyPath, hosts, validity)
			fmt.Fprintf(w, "wrote %s and, signed by it, %v (.crt, .key); Envoy's identity: %s\n",
				filepath.Join(out, democert.CAFile), democert.Services, spiffe.FleetID(set.TrustDomain, set.Fleet))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "output directory")
	cmd.Flags().StringSliceVar(&hosts, "hosts", []string{"localhost", "127.0.0.1", "envoy"}, "DNS names and IPs the edge certificate is for")
	cmd.Flags().DurationVar(&validity, "validity", 30*24*time.Hour, "how long the certificates are valid")
	cmd.Flags().StringVar(&set.TrustDomain, "trust-domain", democert.DefaultTrustDomain, "SPIFFE trust domain of the internal identities")
	cmd.Flags().StringVar(&set.Fleet, "fleet", "edge", "the fleet Envoy's certificate is bound to")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}
