package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/scopegate/scopegate/demo/devstack"
	"github.com/scopegate/scopegate/demo/parent"
	"github.com/scopegate/scopegate/internal/logging"
)

func init() { subcommands = append(subcommands, newDevCmd) }

func newDevCmd() *cobra.Command {
	var (
		o                devstack.Options
		logLevel         string
		noEnvoy          bool
		withParent       bool
		envoyBinary      string
		readyTimeoutFlag time.Duration
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole demo in one process on localhost: idp, demo API, authz, xds (and Envoy if installed)",
		Long: "Start the demo identity provider, the demo API, scopegate authz and the xDS control plane in one\n" +
			"process, from the configs the compose demo uses (addresses without a host bind to 127.0.0.1),\n" +
			"wait until each is ready, and print the next steps. When an envoy binary is on PATH, Envoy is\n" +
			"started too with the local bootstrap. Ctrl-C or SIGTERM stops everything. NOT FOR PRODUCTION.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(cmd.ErrOrStderr(), logLevel)
			if err != nil {
				return err
			}
			slog.SetDefault(log) // the OIDC library logs through slog's default logger
			o.Logger, o.Out, o.EnvoyOutput, o.ReadyTimeout = log, cmd.OutOrStdout(), cmd.ErrOrStderr(), readyTimeoutFlag
			if !noEnvoy {
				if path, err := exec.LookPath(envoyBinary); err == nil {
					o.Envoy = path
				} else {
					log.Info("envoy not started: no envoy binary on PATH", "binary", envoyBinary)
				}
			}
			// SIGHUP too: a closed terminal stops the demo rather than leaving it holding ports.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			if withParent {
				// make forwards SIGTERM to what it runs, but a make killed outright (kill -9)
				// would leave the stack running, holding every port; and make passes SIGINT
				// and SIGHUP sent to its pid on to nobody (it waits for its children).
				if err := parent.TermOnExit(); err != nil {
					return fmt.Errorf("--stop-with-parent: %w", err)
				}
				if err := parent.TermOnSignal(ctx, 100*time.Millisecond); err != nil {
					return fmt.Errorf("--stop-with-parent: %w", err)
				}
			}
			return devstack.Run(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.IDPConfig, "idp-config", "compose/idp.yaml", "idp config file")
	f.StringVar(&o.AuthzConfig, "authz-config", "compose/authz.local.yaml", "authz config file")
	f.StringVar(&o.XDSConfig, "xds-config", "compose/xds.local.yaml", "xds control plane config file")
	f.StringVar(&o.APIListen, "api-listen", "127.0.0.1:8081", "demo API listen address (the xds config's upstream)")
	f.StringVar(&o.EnvoyBootstrap, "envoy-bootstrap", "envoy/bootstrap-local.yaml", "Envoy bootstrap file")
	f.StringVar(&o.CertsDir, "certs-dir", "dev-certs", "where the demo CA and the internal hops' certificates are written at start (the local configs read them there); empty: none")
	f.StringVar(&envoyBinary, "envoy", "envoy", "Envoy binary (started when found on PATH)")
	f.BoolVar(&withParent, "stop-with-parent", false, "stop gracefully when the parent process exits or receives SIGINT, SIGHUP, SIGQUIT or SIGTERM (make run sets it; Linux only)")
	f.BoolVar(&noEnvoy, "no-envoy", false, "do not start Envoy even if it is installed")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (JSON logs on stderr)")
	f.DurationVar(&readyTimeoutFlag, "ready-timeout", 30*time.Second, "how long each service may take to become ready")
	return cmd
}
