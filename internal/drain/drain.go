// Package drain is the first step of every scopegate server's shutdown: for a drain delay
// after SIGTERM, the server still does its job while its health and /readyz say not-serving,
// so that Envoy and Kubernetes send the work elsewhere before its listeners close.
package drain

import (
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Wait waits for d, or until cut is closed (nil: never); it reports whether cut ended it.
func Wait(d time.Duration, cut <-chan struct{}) bool {
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return false
	case <-cut:
		return true
	}
}

// SecondSignal returns a channel closed when the process gets SIGTERM or SIGINT for the
// second time: the first starts the shutdown (the caller's own signal.NotifyContext), the
// second cuts its drain short, for an operator who does not want to wait. stop releases the
// signals.
func SecondSignal() (cut <-chan struct{}, stop func()) {
	c := make(chan os.Signal, 2)
	signal.Notify(c, syscall.SIGTERM, os.Interrupt)
	ch := make(chan struct{})
	done := make(chan struct{})
	go func() {
		for n := 0; n < 2; n++ {
			select {
			case <-c:
			case <-done:
				return
			}
		}
		close(ch)
	}()
	return ch, func() { signal.Stop(c); close(done) }
}
