//go:build !linux

package parent

import "errors"

func termOnExit() error {
	return errors.New("stopping with the parent process is supported on Linux only")
}
