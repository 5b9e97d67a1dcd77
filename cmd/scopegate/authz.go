package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/server"
	"github.com/scopegate/scopegate/internal/drain"
	"github.com/scopegate/scopegate/internal/logging"
)

func init() { subcommands = append(subcommands, newAuthzCmd) }

func newAuthzCmd() *cobra.Command {
	var (
		path, listen, adminAddr, logLevel string
		shutdownTimeout, drainDelay       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "authz --config FILE",
		Short: "Run the ext_authz service: verify bearer JWTs, evaluate the Rego scope policy",
		Long: "Serve envoy.service.auth.v3.Authorization/Check (and gRPC health) on listen, and /healthz,\n" +
			"/readyz and /metrics on admin, from a YAML file (see the README's configuration reference).\n" +
			"--listen, --admin, --log-level, --shutdown-timeout and --drain-delay override the file, as for scopegate xds.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			// The same overrides as scopegate xds; the file's value otherwise.
			fl := cmd.Flags()
			if fl.Changed("listen") {
				cfg.Listen = listen
			}
			if fl.Changed("admin") {
				cfg.Admin = adminAddr
			}
			if fl.Changed("log-level") {
				cfg.LogLevel = logLevel
			}
			if fl.Changed("shutdown-timeout") {
				cfg.ShutdownTimeout = shutdownTimeout
			}
			if fl.Changed("drain-delay") {
				cfg.DrainDelay = &drainDelay
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("config %s with the command line's overrides: %w", path, err)
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
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "authz config file (YAML)")
	f.StringVar(&listen, "listen", "", "gRPC address, host:port or unix:///path (overrides the file's listen)")
	f.StringVar(&adminAddr, "admin", "", "admin HTTP address (overrides the file's admin)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (overrides the file's log_level)")
	f.DurationVar(&shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long to finish in-flight Checks on shutdown (overrides the file's shutdown_timeout)")
	f.DurationVar(&drainDelay, "drain-delay", 5*time.Second, "after SIGTERM, how long health and /readyz say not-serving while Checks are still served (overrides the file's drain_delay; a second signal cuts it short)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
