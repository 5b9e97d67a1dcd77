package devstack

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoopbackAndDialable(t *testing.T) {
	tests := []struct {
		in, loopback, dialable string
	}{
		{":9400", "127.0.0.1:9400", "127.0.0.1:9400"},
		{"127.0.0.1:9401", "127.0.0.1:9401", "127.0.0.1:9401"},
		{"0.0.0.0:9191", "0.0.0.0:9191", "127.0.0.1:9191"},
		{"[::]:9092", "[::]:9092", "127.0.0.1:9092"},
		{"localhost:8081", "localhost:8081", "localhost:8081"},
		{"[::1]:10000", "[::1]:10000", "[::1]:10000"},
		{"not an address", "not an address", "not an address"},
	}
	for _, tt := range tests {
		if got := Loopback(tt.in); got != tt.loopback {
			t.Errorf("Loopback(%q) = %q, want %q", tt.in, got, tt.loopback)
		}
		if got := dialable(tt.in); got != tt.dialable {
			t.Errorf("dialable(%q) = %q, want %q", tt.in, got, tt.dialable)
		}
	}
}

func TestPollReady(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	never := make(chan struct{})
	closed := make(chan struct{})
	close(closed)

	tests := []struct {
		name    string
		url     string
		stopped <-chan struct{}
		timeout time.Duration
		wantErr string
	}{
		{"ready after two 503s", srv.URL, never, 10 * time.Second, ""},
		{"deadline", "http://127.0.0.1:1/ready", never, 300 * time.Millisecond, "not ready"}, // nothing listens on port 1
		{"process exited", "http://127.0.0.1:1/ready", closed, 10 * time.Second, "exited before it was ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			err := pollReady(ctx, tt.url, tt.stopped)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("pollReady: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("pollReady error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestStartEnvoyStopsChild runs a stand-in "envoy" (a shell script that waits) and checks that
// ending the context stops it cleanly, and that the bootstrap's admin address and fleet are read.
func TestStartEnvoyStopsChild(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs a POSIX shell")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "envoy")
	// exec: the shell becomes sleep, so SIGTERM reaches the process we started.
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e, err := StartEnvoy(ctx, bin, filepath.Join("..", "..", "envoy", "bootstrap-local.yaml"), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if e.AdminAddr != "127.0.0.1:9901" || e.Fleet != "edge" {
		t.Errorf("admin %q fleet %q, want 127.0.0.1:9901 and edge", e.AdminAddr, e.Fleet)
	}
	select {
	case <-e.Done():
		t.Fatalf("stand-in envoy exited early: %v", e.Wait())
	default:
	}
	cancel()
	done := make(chan error, 1)
	go func() { done <- e.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stopping envoy: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("envoy not stopped 5s after the context ended")
	}
}
