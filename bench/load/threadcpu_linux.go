package load

import (
	"syscall"
	"time"
)

// threadCPU is the calling OS thread's CPU time (the caller locks its goroutine to the thread).
func threadCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
