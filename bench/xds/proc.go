package xds

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procCPU is a process's CPU time, user and system, summed over its threads from
// /proc/<pid>/task/*/schedstat (nanoseconds, where /proc/<pid>/stat counts 10 ms ticks).
// A thread that exits takes its time with it; Go servers keep their threads.
func procCPU(pid int) (time.Duration, error) {
	cpu, _, err := schedstat(pid)
	return cpu, err
}

// schedstat sums the process's threads' time on a CPU and time waiting for one (runnable
// but not running: on a busy machine a process can look idle while it waits its turn).
func schedstat(pid int) (cpu, waiting time.Duration, err error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/task: no threads (%v)", pid, err)
	}
	for _, p := range tasks {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue // the thread just exited
		}
		f := strings.Fields(string(raw))
		if len(f) < 2 {
			return 0, 0, fmt.Errorf("%s: malformed", p)
		}
		run, err1 := strconv.ParseInt(f[0], 10, 64)
		wait, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("%s: malformed %q", p, raw)
		}
		cpu += time.Duration(run)
		waiting += time.Duration(wait)
	}
	return cpu, waiting, nil
}

// memStatus reads VmRSS and VmHWM (peak RSS) from /proc/<pid>/status, in bytes.
func memStatus(pid int) (rss, peak int64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range bytes.SplitSeq(raw, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(k) {
		case "VmRSS":
			dst = &rss
		case "VmHWM":
			dst = &peak
		default:
			continue
		}
		f := strings.Fields(string(v))
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %q", pid, k, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, err
		}
		*dst = n << 10
	}
	if rss == 0 || peak == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS/VmHWM", pid)
	}
	return rss, peak, nil
}

// resetPeak sets the process's VmHWM to its current RSS (clear_refs 5), so the peak read
// after a change is the change's own.
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}
