package load

import (
	"time"

	"golang.org/x/sys/unix"
)

// pacer sleeps until a send time with microsecond precision. Go's timers wake up to a
// millisecond late on Linux (the runtime waits in epoll with millisecond timeouts: measured
// here, a median of ~0.9 ms), which an open-loop run would count as the server's latency.
// The dispatcher's goroutine is locked to its OS thread, whose timer slack is set to 1 µs,
// and sleeps there with nanosleep.
type pacer struct{ precise bool }

func newPacer() *pacer {
	// The caller has locked its goroutine to this thread for the pacer's lifetime.
	err := unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
	return &pacer{precise: err == nil}
}

func (p *pacer) sleepUntil(t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	if !p.precise {
		time.Sleep(d)
		return
	}
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for {
		var rem unix.Timespec
		if err := unix.Nanosleep(&ts, &rem); err != unix.EINTR {
			return
		}
		ts = rem
	}
}
