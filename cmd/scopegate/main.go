// Command scopegate is the one binary: each subcommand wires scopegate's packages together.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/scopegate/scopegate/internal/version"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		if e, ok := err.(*exitError); !ok || !e.quiet {
			fmt.Fprintln(os.Stderr, "scopegate:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitError carries a specific exit code (e.g. `scopegate check` exits 1 on deny).
type exitError struct {
	code  int
	err   error
	quiet bool // the output already says it all (a denial): main prints nothing more
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 2
}

// subcommands is filled by each subcommand file's init, so adding a command touches one file.
var subcommands []func() *cobra.Command

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "scopegate",
		Short:         "OAuth 2.0 scope gate for the Envoy edge",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
	}
	root.SetVersionTemplate("scopegate {{.Version}}\n")
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "scopegate", version.Version)
		},
	})
	for _, sub := range subcommands {
		root.AddCommand(sub())
	}
	setupCLI(root)
	return root
}
