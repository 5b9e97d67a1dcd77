package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/server"
	"github.com/scopegate/scopegate/internal/drain"
	"github.com/scopegate/scopegate/internal/logging"
)

func init() { subcommands = append(subcommands, newAuthzCmd) }

func newAuthzCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "authz --config FILE",
		Short: "Run the ext_authz service: verify bearer JWTs, evaluate the Rego scope policy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			log, err := logging.New(os.Stderr, cfg.LogLevel)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			srv, err := server.New(ctx, cfg, log)
			if err != nil {
				return err
			}
			cut, stopCut := drain.SecondSignal()
			defer stopCut()
			srv.Start()
			<-ctx.Done()
			if d := *cfg.DrainDelay; d > 0 {
				log.Info("draining: health and /readyz say not-serving, Checks are still served; signal again to stop now", "drain_delay", d.String())
				srv.Drain(d, cut)
			}
			log.Info("shutting down: finishing in-flight Checks", "timeout", cfg.ShutdownTimeout.String())
			sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
			defer cancel()
			return srv.Shutdown(sctx)
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "authz config file (YAML)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
