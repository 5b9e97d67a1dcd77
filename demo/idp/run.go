package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"crypto/tls"
	"github.com/scopegate/scopegate/internal/admin"
	"github.com/scopegate/scopegate/internal/bind"
	"github.com/scopegate/scopegate/internal/certreload"
	"github.com/scopegate/scopegate/internal/drain"
)

// shutdownTimeout bounds the graceful shutdown of both listeners.
const shutdownTimeout = 10 * time.Second

// Serve serves the provider on the config's listen address and the admin API (key rotation,
// /healthz, /readyz, /metrics from gatherer) on its admin address, until ctx is done.
func (p *Provider) Serve(ctx context.Context, gatherer prometheus.Gatherer) error {
	ln, err := bind.TCP(p.cfg.Listen, "listen")
	if err != nil {
		return err
	}
	adm, err := admin.New(p.cfg.Admin, gatherer, func() (any, error) {
		return map[string]any{"issuer": p.cfg.Issuer, "keys": p.Keys()}, nil
	})
	if err != nil {
		ln.Close()
		return fmt.Errorf("admin: %w", err)
	}
	adm.Handle("/admin/", p.AdminHandler())

	p.log.Warn(Warning)
	p.log.Info("idp listening", "addr", ln.Addr().String(), "admin", adm.Addr(), "issuer", p.cfg.Issuer,
		"jwks", p.cfg.Issuer+PathKeys, "audience", p.cfg.API.Audience, "alg", p.keys.alg)

	if p.cfg.TLS != nil {
		r, err := certreload.New(certreload.Options{Files: *p.cfg.TLS, Name: "idp", Logger: p.log,
			NextProtos: []string{"h2", "http/1.1"}, ClientCertOptional: true})
		if err != nil {
			ln.Close()
			return err
		}
		if err := r.Start(ctx); err != nil {
			ln.Close()
			return err
		}
		ln = tls.NewListener(ln, r.ServerConfig())
	}
	srv := &http.Server{Handler: p.handler, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	go adm.Serve(p.log)

	select {
	case err = <-errc:
	case <-ctx.Done():
		if d := p.cfg.DrainDelay; d > 0 {
			// Still serving, but /readyz says draining and each connection closes after its
			// response, so clients reconnect (elsewhere) before the listener closes.
			adm.Drain()
			srv.SetKeepAlivesEnabled(false)
			p.log.Info("draining: /readyz says draining, requests are still served", "drain_delay", d.String())
			drain.Wait(d, p.drainCut)
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	_ = adm.Shutdown(sctx)
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// RotateKeysAt asks a running provider's admin API (e.g. "http://127.0.0.1:9401") to rotate
// its signing key.
func RotateKeysAt(ctx context.Context, hc *http.Client, adminURL string) (*RotateResult, error) {
	u := strings.TrimSuffix(adminURL, "/") + "/admin/rotate-keys"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return nil, fmt.Errorf("admin URL %q: %w", adminURL, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("rotate keys: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("rotate keys: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("rotate keys: POST %s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	var res RotateResult
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("rotate keys: POST %s: %w", u, err)
	}
	return &res, nil
}
