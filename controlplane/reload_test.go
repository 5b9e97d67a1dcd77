package controlplane

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func TestReloadOnSIGHUP(t *testing.T) {
	reload, stop := ReloadOnSIGHUP()
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reload:
	case <-time.After(20 * time.Second): // failure path only
		t.Fatal("no reload after SIGHUP")
	}
}
