package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/introspect"
	"github.com/scopegate/scopegate/extauthz/sharedstate"
)

// SharedState builds the shared state store the config asks for; nil without shared_state.
// It is not connected yet: Handler.Start connects it in the background.
func SharedState(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*sharedstate.Store, error) {
	ss := cfg.SharedState
	if ss == nil {
		return nil, nil
	}
	r := ss.Redis
	o := sharedstate.Options{
		Addresses: r.Addresses, Username: r.Username, DB: r.DB, KeyPrefix: r.KeyPrefix, DialTimeout: r.DialTimeout,
		Timeout: ss.Timeout, LocalFallback: ss.OnUnavailable == config.OnUnavailableLocal, Logger: log, Registry: reg,
	}
	if r.PasswordFile != "" {
		path := r.PasswordFile
		o.Password = func() (string, error) { return config.ReadPasswordFile(path) }
	}
	if ss.KeyFile != "" {
		o.AnswerKey = ss.Key // read by config.Load
	}
	if t := r.TLS; t != nil {
		tc, err := sharedStateTLS(t)
		if err != nil {
			return nil, err
		}
		o.TLS = tc
	}
	return sharedstate.New(o)
}

// sharedAnswers is the store's shared introspection answers, nil (not a nil pointer in an
// interface) without a store.
func sharedAnswers(s *sharedstate.Store) introspect.Shared {
	if s == nil || s.Answers() == nil {
		return nil
	}
	return s.Answers()
}

// sharedStateTLS verifies the store with ca_file (or the system's roots) and presents the
// client certificate, read again for every new connection so a renewed one is used without a
// restart.
func sharedStateTLS(t *config.SharedRedisTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(t.CA) { // read by config.Load
			return nil, fmt.Errorf("shared_state.redis.tls.ca_file %s: no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			return nil, fmt.Errorf("shared_state.redis.tls: %w", err)
		}
		certFile, keyFile := t.CertFile, t.KeyFile
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("shared_state.redis.tls: %w", err)
			}
			return &c, nil
		}
	}
	return tc, nil
}
