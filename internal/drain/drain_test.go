package drain

import (
	"testing"
	"time"
)

func TestWait(t *testing.T) {
	if Wait(0, nil) {
		t.Fatal("a zero delay reported a cut")
	}
	cut := make(chan struct{})
	close(cut)
	start := time.Now()
	if !Wait(time.Hour, cut) {
		t.Fatal("a closed cut did not end the wait")
	}
	if time.Since(start) > time.Minute {
		t.Fatal("the cut wait took the whole delay")
	}
	if Wait(time.Millisecond, make(chan struct{})) {
		t.Fatal("a delay that ran out reported a cut")
	}
}
