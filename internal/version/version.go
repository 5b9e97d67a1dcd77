// Package version holds the build's version string, set at link time by the Makefile.
package version

// Version is overridden with -ldflags "-X github.com/scopegate/scopegate/internal/version.Version=...".
var Version = "dev"
