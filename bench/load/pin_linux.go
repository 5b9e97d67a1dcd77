package load

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinProcess restricts every thread of process pid to one CPU. Threads created later inherit
// the mask of the thread that creates them, so once every existing thread is pinned the
// process stays pinned; the passes repeat until a pass finds every thread already pinned
// (a thread started mid-pass by an unpinned one is caught by the next).
func pinProcess(pid, cpu int) error {
	var want unix.CPUSet
	want.Set(cpu)
	return setProcessMask(pid, want)
}

// pinHarness pins this process to cpu and gives it one P at once: the runtime sized
// GOMAXPROCS for every CPU at start and would only notice the new affinity mask within a
// second or so, during which two Ps share one CPU. undo restores the CPUs, then GOMAXPROCS
// (the runtime's default, updating itself as before, unless the environment set it).
func pinHarness(cpu int) (undo func(), err error) {
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		return nil, err
	}
	if err := pinProcess(os.Getpid(), cpu); err != nil {
		return nil, err
	}
	procs := runtime.GOMAXPROCS(1)
	return func() {
		_ = setProcessMask(os.Getpid(), orig)
		if os.Getenv("GOMAXPROCS") == "" {
			runtime.SetDefaultGOMAXPROCS()
		} else {
			runtime.GOMAXPROCS(procs)
		}
	}, nil
}

// setProcessMask sets the CPU mask of every thread of pid.
func setProcessMask(pid int, want unix.CPUSet) error {
	for pass := 0; pass < 5; pass++ {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		changed := false
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			var have unix.CPUSet
			if err := unix.SchedGetaffinity(tid, &have); err != nil {
				if errors.Is(err, unix.ESRCH) {
					continue // the thread exited
				}
				return fmt.Errorf("thread %d: %w", tid, err)
			}
			if have == want {
				continue
			}
			changed = true
			if err := unix.SchedSetaffinity(tid, &want); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("set the CPUs of thread %d: %w", tid, err)
			}
		}
		if !changed {
			return nil
		}
	}
	return fmt.Errorf("process %d: threads kept appearing unpinned", pid)
}

// onCPU reports whether every thread of pid may run on cpu only.
func onCPU(pid, cpu int) (bool, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false, err
	}
	var want unix.CPUSet
	want.Set(cpu)
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		var have unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &have); err == nil && have != want {
			return false, nil
		}
	}
	return true, nil
}
