//go:build !linux

package load

import "time"

// pacer sleeps until a send time (with Go's timer precision outside Linux).
type pacer struct{}

func newPacer() *pacer { return &pacer{} }

func (p *pacer) sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }
