package load

import (
	"runtime"
	"slices"
	"testing"
	"time"
)

// The open-loop pacer must wake close to the send time: Go's own timers wake about a
// millisecond late on Linux, which the open-loop latency would have counted. A loose bound
// (the median, on a shared machine) that Go's timers here miss: they measured ~0.9 ms.
func TestPacerWakesOnTime(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the precise pacer is Linux-only")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p := newPacer()
	if !p.precise {
		t.Skip("PR_SET_TIMERSLACK not available")
	}
	late := make([]time.Duration, 200)
	for i := range late {
		at := time.Now().Add(time.Duration(100+i%7*50) * time.Microsecond)
		p.sleepUntil(at)
		late[i] = time.Since(at)
	}
	slices.Sort(late)
	t.Logf("wake-up lateness: median %v, p90 %v", late[len(late)/2], late[len(late)*9/10])
	if med := late[len(late)/2]; med > 600*time.Microsecond {
		t.Fatalf("median wake-up %v late, want well under Go's ~1 ms timer granularity", med)
	}
}
