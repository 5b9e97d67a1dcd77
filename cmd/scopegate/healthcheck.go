package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/scopegate/scopegate/internal/healthcheck"
)

func init() { subcommands = append(subcommands, newHealthcheckCmd) }

func newHealthcheckCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck URL",
		Short: "Exit 0 if URL answers 2xx, 1 otherwise (container health checks; the images have no shell)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := healthcheck.Probe(cmd.Context(), args[0], timeout); err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "request timeout")
	return cmd
}
