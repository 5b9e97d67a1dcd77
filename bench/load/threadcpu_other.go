//go:build !linux

package load

import "time"

func threadCPU() (time.Duration, bool) { return 0, false }
