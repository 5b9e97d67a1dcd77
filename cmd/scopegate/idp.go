package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/scopegate/scopegate/demo/idp"
	"github.com/scopegate/scopegate/internal/drain"
	"github.com/scopegate/scopegate/internal/logging"
)

func init() { subcommands = append(subcommands, newIDPCmd) }

func newIDPCmd() *cobra.Command {
	var configPath, logLevel string
	cmd := &cobra.Command{
		Use:   "idp --config FILE",
		Short: "Run the demo OAuth 2.0 / OpenID Connect provider (NOT FOR PRODUCTION)",
		Long: "Run the development identity provider: discovery, JWKS, authorization code + PKCE with a\n" +
			"login and consent page, client credentials and refresh token rotation, RFC 9068 JWT access\n" +
			"tokens. It keeps everything in memory and is NOT FOR PRODUCTION.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(cmd.ErrOrStderr(), logLevel)
			if err != nil {
				return err
			}
			slog.SetDefault(log) // the OIDC library logs through slog's default logger
			cfg, err := idp.Load(configPath)
			if err != nil {
				return err
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			cut, stopCut := drain.SecondSignal()
			defer stopCut()
			p, err := idp.New(cfg, log, idp.WithRegisterer(reg), idp.WithDrainCut(cut))
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return p.Serve(ctx, reg)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "idp config file (YAML)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	_ = cmd.MarkFlagRequired("config")
	cmd.AddCommand(newIDPRotateCmd())
	return cmd
}

func newIDPRotateCmd() *cobra.Command {
	var adminURL string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "rotate --admin URL",
		Short: "Rotate the running idp's signing key (the old public key stays in the JWKS until its tokens expire)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := idp.RotateKeysAt(cmd.Context(), &http.Client{Timeout: timeout}, adminURL)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			if err := enc.Encode(res); err != nil {
				return fmt.Errorf("write result: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&adminURL, "admin", "http://"+idp.DefaultAdminListen, "the idp's admin URL")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "request timeout")
	return cmd
}
