package main

import (
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	xdsconfig "github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/demo/idp"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/internal/lint"
)

func init() { subcommands = append(subcommands, newLintCmd) }

func newLintCmd() *cobra.Command {
	var (
		xdsFile, policyPath, idpFile, clientsFile string
		sig                                       signingFlags
	)
	cmd := &cobra.Command{
		Use:   "lint --xds xds.yaml --policy policies/ [--idp idp.yaml | --clients clients.yaml]",
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
			in := lint.Inputs{XDSFile: xdsFile, XDS: x, Policy: b}
			switch {
			case idpFile != "" && clientsFile != "":
				return fmt.Errorf("--idp and --clients: give one of them")
			case idpFile != "":
				cfg, err := idp.Load(idpFile)
				if err != nil {
					return fmt.Errorf("--idp: %w", err)
				}
				in.Grants, in.GrantsFile = idpGrants(cfg), idpFile
			case clientsFile != "":
				if in.Grants, err = lint.LoadClients(clientsFile); err != nil {
					return fmt.Errorf("--clients: %w", err)
				}
				in.GrantsFile = clientsFile
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
	f.StringVar(&clientsFile, "clients", "", "a clients file (clients: [{id, scopes}]) of any IdP: also check that every route's scopes can be granted")
	sig.add(f, true)
	_ = cmd.MarkFlagRequired("xds")
	return cmd
}

// idpGrants are the demo IdP's grants: a client-credentials client's scopes, and for every
// other client what it and each user both hold (the consent page grants no more).
func idpGrants(cfg *idp.Config) []lint.Grant {
	var grants []lint.Grant
	for _, c := range cfg.Clients {
		if slices.Contains(c.GrantTypes, idp.GrantClientCredentials) {
			grants = append(grants, lint.Grant{Who: c.ID, Scopes: c.Scopes})
		}
		for _, u := range cfg.Users {
			var both []string
			for _, s := range c.Scopes {
				if slices.Contains(u.Scopes, s) {
					both = append(both, s)
				}
			}
			grants = append(grants, lint.Grant{Who: c.ID + "/" + u.Username, Scopes: both})
		}
	}
	if grants == nil {
		grants = []lint.Grant{} // checked, and nothing can be granted
	}
	return grants
}
