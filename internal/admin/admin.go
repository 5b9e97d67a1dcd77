// Package admin serves the HTTP admin endpoints every scopegate service exposes:
// /healthz (the process is alive), /readyz (it can do its job) and /metrics (Prometheus).
package admin

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scopegate/scopegate/internal/bind"
)

// ReadyFunc reports readiness; a non-nil error says what is missing and makes /readyz answer 503.
// Details, when not nil, are added to the /readyz JSON body either way.
type ReadyFunc func() (details any, err error)

// Server is the admin HTTP server.
type Server struct {
	mux      *http.ServeMux
	srv      *http.Server
	ln       net.Listener
	draining atomic.Bool
}

// New builds an admin server on addr; Handle adds further endpoints (such as /status) before Serve.
func New(addr string, gatherer prometheus.Gatherer, ready ReadyFunc) (*Server, error) {
	ln, err := bind.TCP(addr, "admin")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	s := &Server{mux: mux, ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		details, err := ready()
		body := struct {
			Status  string `json:"status"`
			Reason  string `json:"reason,omitempty"`
			Details any    `json:"details,omitempty"`
		}{Status: "ready", Details: details}
		code := http.StatusOK
		switch {
		case s.draining.Load():
			body.Status, body.Reason, code = "draining", "shutting down: send new work elsewhere", http.StatusServiceUnavailable
		case err != nil:
			body.Status, body.Reason, code = "not ready", err.Error(), http.StatusServiceUnavailable
		}
		writeJSON(w, code, body)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	return s, nil
}

// Drain makes /readyz answer 503 "draining" from now on: the process is shutting down, and
// whatever routes work to it should stop. The other endpoints are served as before.
func (s *Server) Drain() { s.draining.Store(true) }

// UseTLS makes the server speak TLS with cfg (call before Serve).
func (s *Server) UseTLS(cfg *tls.Config) { s.ln = tls.NewListener(s.ln, cfg) }

// Handle registers an extra endpoint.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Addr is the address the server listens on (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve blocks until Shutdown; it logs a failure rather than returning it, since admin
// endpoints must not take the data path down with them.
func (s *Server) Serve(log *slog.Logger) {
	// net/http's own errors (a refused TLS handshake, say) go to the JSON log too.
	s.srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("admin server stopped", "error", err)
	}
}

// Shutdown stops the server, waiting for in-flight requests up to ctx's deadline.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// WriteJSON writes v as an indented JSON response.
func WriteJSON(w http.ResponseWriter, code int, v any) { writeJSON(w, code, v) }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
