package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/spf13/cobra"

	"github.com/scopegate/scopegate/extauthz/impact"
	"github.com/scopegate/scopegate/extauthz/policy"
)

func init() { subcommands = append(subcommands, newPolicyCmd) }

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Work with Rego scope policies"}
	var (
		verbose bool
		sig     signingFlags
	)
	test := &cobra.Command{
		Use:   "test [DIR|BUNDLE]",
		Short: "Run the policy's Rego unit tests with OPA's tester (as `opa test` does)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "policies"
			if len(args) == 1 {
				path = args[0]
			}
			cfg, err := sig.loadConfig()
			if err != nil {
				return err
			}
			vc, err := sig.verification(cfg)
			if err != nil {
				return err
			}
			b, err := policy.LoadVerified(path, nil, vc)
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
	sig.add(test.Flags(), true)
	cmd.AddCommand(test, newPolicyImpactCmd())
	return cmd
}

func newPolicyImpactCmd() *cobra.Command {
	var (
		candidate, logPath, baseline, format, query string
		allowFlips                                  bool
		errorStatus                                 int
		sig                                         signingFlags
	)
	cmd := &cobra.Command{
		Use:   "impact --policy NEW_DIR_OR_BUNDLE --log decisions.jsonl [--baseline OLD] [--config authz.yaml | --verification-key PEM] [--format text|json] [--allow-flips]",
		Short: "Replay a decision log against a candidate policy and report the decisions that would flip (exit 1 if any)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format: %q is not text or json", format)
			}
			cfg, err := sig.loadConfig()
			if err != nil {
				return err
			}
			if cfg != nil {
				// authz's own settings, unless the command line says otherwise.
				if !cmd.Flags().Changed("query") {
					query = cfg.Policy.Query
				}
				if !cmd.Flags().Changed("error-status") {
					errorStatus = cfg.Policy.ErrorStatus
				}
			}
			vc, err := sig.verification(cfg)
			if err != nil {
				return err
			}
			load := func(flag, path string) (*policy.Engine, error) {
				e, err := policy.New(cmd.Context(), policy.Options{Path: path, Query: query, EvalTimeout: time.Second, Verification: vc})
				if err != nil {
					return nil, fmt.Errorf("--%s: %w", flag, err)
				}
				return e, nil
			}
			o := impact.Options{CandidateName: candidate, BaselineName: baseline, ErrorStatus: errorStatus}
			if o.Candidate, err = load("policy", candidate); err != nil {
				return err
			}
			if baseline != "" {
				if o.Baseline, err = load("baseline", baseline); err != nil {
					return err
				}
			}
			var in io.Reader = cmd.InOrStdin()
			if logPath != "-" {
				f, err := os.Open(logPath)
				if err != nil {
					return fmt.Errorf("--log: %w", err)
				}
				defer f.Close()
				in = f
			}
			rep, err := impact.Run(cmd.Context(), in, o)
			if err != nil {
				return fmt.Errorf("--log %s: %w", logPath, err)
			}
			if format == "json" {
				err = rep.WriteJSON(cmd.OutOrStdout())
			} else {
				err = rep.WriteText(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			if rep.Flips > 0 && !allowFlips {
				return &exitError{code: 1, err: fmt.Errorf("%d decision(s) flip (--allow-flips to accept)", rep.Flips)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&candidate, "policy", "", "the candidate policy: a directory or an OPA bundle (required)")
	f.StringVar(&logPath, "log", "", "the decision log, JSON lines with input (decision_log.include_input); - for stdin (required)")
	f.StringVar(&baseline, "baseline", "", "the policy in force today; without it the logged decisions are the baseline")
	f.StringVar(&format, "format", "text", "text or json")
	f.BoolVar(&allowFlips, "allow-flips", false, "exit 0 even when decisions flip")
	f.IntVar(&errorStatus, "error-status", 500, "the status of a policy error (authz's policy.error_status)")
	f.StringVar(&query, "query", "data.scopegate.authz.decision", "the decision (authz's policy.query)")
	sig.add(f, true)
	_ = cmd.MarkFlagRequired("policy")
	_ = cmd.MarkFlagRequired("log")
	return cmd
}
