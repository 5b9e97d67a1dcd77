// Command scopegate-xdsbench is the control plane's fan-out benchmark (make bench-xds); see
// docs/benchmarks.md and package github.com/scopegate/scopegate/bench/xds.
package main

import (
	"os"

	"github.com/scopegate/scopegate/bench/xds"
)

func main() { os.Exit(xds.Main(os.Args[1:], os.Stdout, os.Stderr)) }
