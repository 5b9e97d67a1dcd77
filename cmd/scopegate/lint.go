package main

import (
	"fmt"

	"github.com/spf13/cobra"

	xdsconfig "github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/idp"
	"github.com/scopegate/scopegate/internal/lint"
)

func init() { subcommands = append(subcommands, newLintCmd) }

func newLintCmd() *cobra.Command {
	var (
		xdsFile, policyPath, idpFile string
		sig                          signingFlags
	)
	cmd := &cobra.Command{
		Use:   "lint --xds xds.yaml --policy policies/ [--idp idp.yaml]",
		Short: "Cross-check routes and policy: unprotected routes, rules for missing routes, public routes shadowing protected ones, ungrantable scopes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			x, err := xdsconfig.Load(xdsFile)
			if err != nil {
				return fmt.Errorf("--xds: %w", err)
			}
			cfg, err := sig.loadConfig()
			if err != nil {
				return err
			}
			vc, err := sig.verification(cfg)
			if err != nil {
				return err
			}
			b, err := policy.LoadVerified(policyPath, nil, vc)
			if err != nil {
				return fmt.Errorf("--policy: %w", err)
			}
			in := lint.Inputs{XDSFile: xdsFile, XDS: x, Policy: b, IdPFile: idpFile}
			if idpFile != "" {
				if in.IdP, err = idp.Load(idpFile); err != nil {
					return fmt.Errorf("--idp: %w", err)
				}
			}
			findings, err := lint.Run(in)
			if err != nil {
				return err
			}
			if err := lint.Write(cmd.OutOrStdout(), findings); err != nil {
				return err
			}
			if lint.HasErrors(findings) {
				return &exitError{code: 1, err: fmt.Errorf("lint found errors")}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&xdsFile, "xds", "", "the control plane's config (required)")
	f.StringVar(&policyPath, "policy", "policies", "the policy directory or bundle")
	f.StringVar(&idpFile, "idp", "", "the demo IdP's config: also check that every route's scopes can be granted")
	sig.add(f, true)
	_ = cmd.MarkFlagRequired("xds")
	return cmd
}
