package parent

import (
	"errors"
	"os"
	"syscall"
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
