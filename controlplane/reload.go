package controlplane

import (
	"os"
	"os/signal"
	"syscall"
)

// ReloadOnSIGHUP is Run's reload channel for a process: one value per SIGHUP, coalesced
// while a reload is pending. stop stops listening for the signal.
func ReloadOnSIGHUP() (reload <-chan struct{}, stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ch := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, func() {
		signal.Stop(hup)
		close(hup) // no more deliveries after Stop: ends the goroutine
	}
}
