//go:build race

package main

import "os"

// raceBuild: this test binary was built with -race, so the scopegate binary the tests run is
// too (see buildVars).
const raceBuild = true

func init() {
	// A race-built process sleeps a second at exit (the race runtime's atexit_sleep_ms) before
	// it reports; the processes these tests start would add it to every exit they time.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
}
