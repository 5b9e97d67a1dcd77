package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestProbeHealth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			_, _ = w.Write([]byte("ok"))
			return
		}
		http.Error(w, "not ready", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	tests := []struct {
		name, url, wantErr string
	}{
		{"healthy", srv.URL + "/healthz", ""},
		{"unhealthy", srv.URL + "/readyz", "503"},
		{"bad url", "::", "health check"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := probeHealth(t.Context(), tt.url, time.Second)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
	srv.Close()
	if err := probeHealth(t.Context(), srv.URL+"/healthz", time.Second); err == nil {
		t.Fatal("want an error when nothing listens")
	}
}
