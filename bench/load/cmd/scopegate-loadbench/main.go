// Command scopegate-loadbench is scopegate's load benchmark (make bench-load); see
// docs/benchmarks.md and package github.com/scopegate/scopegate/bench/load.
package main

import (
	"os"

	"github.com/scopegate/scopegate/bench/load"
)

func main() { os.Exit(load.Main(os.Args[1:], os.Stdout, os.Stderr)) }
