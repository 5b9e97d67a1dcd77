package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/scopegate/scopegate/demo/demoapi"
	"github.com/scopegate/scopegate/internal/logging"
)

func init() { subcommands = append(subcommands, newDemoAPICmd) }

func newDemoAPICmd() *cobra.Command {
	var listen, logLevel string
	var empty bool
	cmd := &cobra.Command{
		Use:   "demo-api",
		Short: "Run the demo upstream API (orders; echoes the x-scopegate-* identity headers it receives)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(cmd.ErrOrStderr(), logLevel)
			if err != nil {
				return err
			}
			var opts []demoapi.Option
			if empty {
				opts = append(opts, demoapi.WithoutSeed())
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return demoapi.New(opts...).Serve(ctx, listen, log)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", ":8081", "listen address")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().BoolVar(&empty, "empty", false, "start without the two sample orders")
	return cmd
}
