package main

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/spf13/cobra"

	"github.com/scopegate/scopegate/extauthz/policy"
)

func init() { subcommands = append(subcommands, newPolicyCmd) }

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Work with Rego scope policies"}
	var verbose bool
	test := &cobra.Command{
		Use:   "test [DIR|BUNDLE]",
		Short: "Run the policy's Rego unit tests with OPA's tester (as `opa test` does)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "policies"
			if len(args) == 1 {
				path = args[0]
			}
			b, err := policy.Load(path, nil)
			if err != nil {
				return err
			}
			results, err := policy.TestResults(cmd.Context(), b)
			if err != nil {
				return err
			}
			ch := make(chan *tester.Result, len(results))
			failed := 0
			for _, r := range results {
				if !r.Pass() && !r.Skip {
					failed++
				}
				ch <- r
			}
			close(ch)
			// Verbose on failure, as the issue asks: the failing tests' traces are worth reading.
			rep := tester.PrettyReporter{Output: cmd.OutOrStdout(), Verbose: verbose || failed > 0, FailureLine: true}
			if err := rep.Report(ch); err != nil {
				return err
			}
			if failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d policy test(s) failed", failed)}
			}
			return nil
		},
	}
	test.Flags().BoolVarP(&verbose, "verbose", "v", false, "list every test")
	cmd.AddCommand(test)
	return cmd
}
