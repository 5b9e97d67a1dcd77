package parent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func termOnExit() error {
	ppid := os.Getppid()
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0); errno != 0 {
		return errno
	}
	// The parent may have exited before the request was made: then no signal will come.
	if os.Getppid() != ppid || ppid == 1 {
		return errors.New("the parent process has already exited")
	}
	return nil
}

// terminating is the set of signals that mean "stop", as bits of /proc/PID/status masks
// (bit n-1 for signal n).
const terminating = 1<<(syscall.SIGHUP-1) | 1<<(syscall.SIGINT-1) | 1<<(syscall.SIGQUIT-1) | 1<<(syscall.SIGTERM-1)

func termOnSignal(ctx context.Context, every time.Duration) error {
	ppid := os.Getppid()
	base, err := signalMask(ppid)
	if err != nil {
		return err
	}
	// Signals the parent already blocks (or has pending) at start are its own business.
	watch := uint64(terminating) &^ base
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			m, err := signalMask(ppid)
			if err != nil || m&watch != 0 {
				// The parent got a signal, or is gone (PDEATHSIG covers that too).
				_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
				return
			}
		}
	}()
	return nil
}

// signalMask is the union of pid's blocked and pending (thread and process) signals.
func signalMask(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var m uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "SigBlk" && name != "SigPnd" && name != "ShdPnd") {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status %s: %w", pid, name, err)
		}
		m |= v
	}
	return m, sc.Err()
}
