// Package parent ties a process's life to its parent's: `make run` execs `scopegate dev`;
// make forwards SIGTERM to it, but if make is killed outright (SIGKILL) the demo stack would
// run on, holding its ports.
package parent

// TermOnExit asks the kernel to send this process SIGTERM when its parent exits, so a
// signal handler already in place stops everything gracefully. It is an error when the
// platform can't do it or the parent is already gone.
func TermOnExit() error { return termOnExit() }
