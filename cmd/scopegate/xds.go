package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/scopegate/scopegate/controlplane"
	xdsconfig "github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/internal/drain"
	"github.com/scopegate/scopegate/internal/logging"
	"github.com/scopegate/scopegate/internal/tracing"
)

func init() { subcommands = append(subcommands, newXDSCmd) }

func newXDSCmd() *cobra.Command {
	var (
		configPath, logLevel, listen, adminAddr string
		shutdownTimeout, drainDelay             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "xds --config FILE",
		Short: "Run the xDS control plane: push routes and the ext_authz filter to the Envoy fleet",
		Long: "Serve Envoy listeners, routes, clusters, endpoints and TLS secrets over ADS (SotW and delta),\n" +
			"one snapshot per fleet (node.cluster), from a declarative YAML file. The file and its\n" +
			"certificates are reloaded when they change and on SIGHUP; an invalid file is refused whole.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(cmd.ErrOrStderr(), logLevel)
			if err != nil {
				return err
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// Tracing is read once, before the first reload, so that reload is traced too.
			cfg, err := xdsconfig.Load(configPath)
			if err != nil {
				return err
			}
			tp, err := tracing.New(ctx, cfg.Tracing, "scopegate-xds")
			if err != nil {
				return err
			}
			defer func() {
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = tp.Shutdown(sctx)
			}()
			cut, stopCut := drain.SecondSignal()
			defer stopCut()
			svc, err := controlplane.New(ctx, controlplane.Options{
				ConfigPath: configPath, Logger: log, Registry: reg, Listen: listen, Admin: adminAddr,
				Tracer:     tp.Tracer("github.com/scopegate/scopegate/controlplane"),
				DrainDelay: drainDelay, DrainCut: cut,
			})
			if err != nil {
				return err
			}
			reload, stopReload := controlplane.ReloadOnSIGHUP()
			defer stopReload()
			return svc.Run(ctx, reload, shutdownTimeout)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "control plane config file (YAML)")
	cmd.Flags().StringVar(&listen, "listen", "", "gRPC ADS address (overrides the file's listen)")
	cmd.Flags().StringVar(&adminAddr, "admin", "", "admin HTTP address (overrides the file's admin)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().DurationVar(&drainDelay, "drain-delay", 5*time.Second, "after SIGTERM, how long /readyz says draining while ADS is still served (a second signal cuts it short)")
	cmd.Flags().DurationVar(&shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long to wait for streams and requests on shutdown")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
