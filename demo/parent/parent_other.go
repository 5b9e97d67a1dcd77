//go:build !linux

package parent

import (
	"context"
	"errors"
	"time"
)

func termOnExit() error {
	return errors.New("stopping with the parent process is supported on Linux only")
}

func termOnSignal(context.Context, time.Duration) error {
	return errors.New("stopping with the parent process is supported on Linux only")
}
