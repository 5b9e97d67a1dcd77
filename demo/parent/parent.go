// Package parent ties a process's life to its parent's: `make run` execs `scopegate dev`;
// make forwards SIGTERM to it, but if make is killed outright (SIGKILL) the demo stack would
// run on, holding its ports. And GNU make does not pass SIGINT, SIGHUP or SIGQUIT on at all:
// it assumes the terminal sent them to the whole process group, and waits for its children
// to exit on their own. A `kill -INT <make's pid>` would leave the stack running.
package parent

import (
	"context"
	"time"
)

// TermOnExit asks the kernel to send this process SIGTERM when its parent exits, so a
// signal handler already in place stops everything gracefully. It is an error when the
// platform can't do it or the parent is already gone.
func TermOnExit() error { return termOnExit() }

// TermOnSignal watches the parent for a terminating signal it received (SIGHUP, SIGINT,
// SIGQUIT or SIGTERM) and then sends this process SIGTERM, until ctx ends. GNU make blocks
// the signal it is handling while it waits for its children, and the kernel shows a
// process's blocked and pending signals in /proc: a signal newly blocked or pending there is
// one the parent got. every is the polling interval.
func TermOnSignal(ctx context.Context, every time.Duration) error { return termOnSignal(ctx, every) }
