package load

import (
	"errors"
	"fmt"
	"os"
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
				return fmt.Errorf("pin thread %d to CPU %d: %w", tid, cpu, err)
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
