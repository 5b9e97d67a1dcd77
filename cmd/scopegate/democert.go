package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/scopegate/scopegate/internal/democert"
)

func init() { subcommands = append(subcommands, newDemoCertCmd) }

func newDemoCertCmd() *cobra.Command {
	var out string
	var hosts []string
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "demo-cert --out DIR",
		Short: "Write a self-signed demo TLS certificate and key (DIR/tls.crt, DIR/tls.key; NOT FOR PRODUCTION)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			certPath, keyPath, err := democert.Write(out, democert.Options{Hosts: hosts, Validity: validity})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s for %v, valid for %s\n", certPath, keyPath, hosts, validity)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "output directory")
	cmd.Flags().StringSliceVar(&hosts, "hosts", []string{"localhost", "127.0.0.1", "envoy"}, "DNS names and IPs the certificate is for")
	cmd.Flags().DurationVar(&validity, "validity", 30*24*time.Hour, "how long the certificate is valid")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}
