package config

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/scopegate/scopegate/internal/configcheck"
)

// SharedState puts the state every replica must agree on (DPoP proofs used, introspection
// answers) in a Redis-protocol store: Valkey or Redis, a single server, a proxy, or a Redis
// Cluster (docs/scaling.md).
type SharedState struct {
	Redis *SharedRedis `yaml:"redis"`
	// OnUnavailable is what DPoP Checks do while the store is down: fail_closed (default:
	// 503 replay_store_unavailable with Retry-After) or local (each replica's own replay
	// cache decides; a proof can then be replayed once per replica). Introspection always
	// falls back to the local cache and the IdP.
	OnUnavailable string `yaml:"on_unavailable"`
	// KeyFile holds at least 32 random bytes, the same on every replica: introspection
	// answers are stored under a keyed hash of the token and sealed with it. Required when
	// an issuer uses introspection.
	KeyFile string `yaml:"key_file"`
	// Key is KeyFile's content less surrounding whitespace, read by Validate.
	Key []byte `yaml:"-" json:"-"`
	// Timeout bounds one store command (default 100ms); a Check's own deadline bounds it too.
	Timeout time.Duration `yaml:"timeout"`
}

// SharedRedis is how the store is reached.
type SharedRedis struct {
	// Addresses: one host:port is a single server or a proxy; several are Redis Cluster
	// nodes (seeds). One unix:///path is a server on a Unix socket.
	Addresses    []string `yaml:"addresses"`
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"` // re-read on every reconnect
	DB           int      `yaml:"db"`
	// KeyPrefix starts every key scopegate writes (default "scopegate:"), so one store can
	// serve several fleets or applications.
	KeyPrefix   string          `yaml:"key_prefix"`
	DialTimeout time.Duration   `yaml:"dial_timeout"` // default 1s
	TLS         *SharedRedisTLS `yaml:"tls"`
}

// SharedRedisTLS verifies the store's certificate (ca_file; empty: the system's roots) and
// presents a client certificate (cert_file and key_file, re-read on every new connection).
type SharedRedisTLS struct {
	CAFile string `yaml:"ca_file"`
	// CA is CAFile's content (PEM), read by Validate.
	CA         []byte `yaml:"-" json:"-"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// On-unavailable modes.
const (
	OnUnavailableFailClosed = "fail_closed"
	OnUnavailableLocal      = "local"
)

func (s *SharedState) applyDefaults() {
	if s.OnUnavailable == "" {
		s.OnUnavailable = OnUnavailableFailClosed
	}
	if s.Timeout == 0 {
		s.Timeout = 100 * time.Millisecond
	}
	if r := s.Redis; r != nil {
		if r.KeyPrefix == "" {
			r.KeyPrefix = "scopegate:"
		}
		if r.DialTimeout == 0 {
			r.DialTimeout = time.Second
		}
	}
}

func (s *SharedState) validate(c *Config, errs *configcheck.Problems) {
	switch s.OnUnavailable {
	case OnUnavailableFailClosed, OnUnavailableLocal:
	default:
		errs.Add("shared_state.on_unavailable", "%q: want fail_closed or local", s.OnUnavailable)
	}
	if s.Timeout < time.Millisecond || s.Timeout > 5*time.Second {
		errs.Add("shared_state.timeout", "%s is out of range (1ms to 5s)", s.Timeout)
	}
	introspecting := false
	for i := range c.Issuers {
		introspecting = introspecting || c.Issuers[i].Introspection != nil
	}
	switch {
	case s.KeyFile != "":
		s.Key = readKey(errs, "shared_state.key_file", s.KeyFile)
	case introspecting:
		errs.Add("shared_state.key_file", "required when an issuer uses introspection: answers in the store are keyed and sealed with it (32 random bytes, the same on every replica)")
	}
	r := s.Redis
	if r == nil {
		errs.Add("shared_state.redis", "required (the store's addresses)")
		return
	}
	if len(r.Addresses) == 0 {
		errs.Add("shared_state.redis.addresses", "at least one host:port is required")
	}
	for _, a := range r.Addresses {
		if p, ok := strings.CutPrefix(a, UnixPrefix); ok {
			if len(r.Addresses) != 1 || !strings.HasPrefix(p, "/") {
				errs.Add("shared_state.redis.addresses", "%q: a Unix socket (unix:///absolute/path) must be the only address", a)
			}
			continue
		}
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			errs.Add("shared_state.redis.addresses", "%q is not host:port", a)
		}
	}
	if r.DB < 0 {
		errs.Add("shared_state.redis.db", "must not be negative")
	}
	if r.DB != 0 && len(r.Addresses) > 1 {
		errs.Add("shared_state.redis.db", "%d: a Redis Cluster (several addresses) has database 0 only", r.DB)
	}
	if len(r.KeyPrefix) > 64 || strings.ContainsAny(r.KeyPrefix, "{} \t\r\n") {
		errs.Add("shared_state.redis.key_prefix", "%q: at most 64 characters, no whitespace and no braces (they would change the cluster hash tag)", r.KeyPrefix)
	}
	if r.DialTimeout <= 0 || r.DialTimeout > 30*time.Second {
		errs.Add("shared_state.redis.dial_timeout", "%s is out of range (above 0, at most 30s)", r.DialTimeout)
	}
	if r.PasswordFile != "" {
		if _, err := ReadPasswordFile(r.PasswordFile); err != nil {
			errs.Add("shared_state.redis.password_file", "%v", err)
		}
	} else if r.Username != "" {
		errs.Add("shared_state.redis.username", "set, but password_file is not")
	}
	if t := r.TLS; t != nil {
		if t.CAFile != "" {
			if _, err := os.Stat(t.CAFile); err != nil {
				errs.Add("shared_state.redis.tls.ca_file", "%v", err)
			} else if t.CA, err = os.ReadFile(t.CAFile); err != nil {
				errs.Add("shared_state.redis.tls.ca_file", "%v", err)
			}
		}
		// The client certificate is read again for every new connection (renewal without a
		// restart): only its presence is checked here.
		for _, f := range [][2]string{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
			if f[1] == "" {
				continue
			}
			if _, err := os.Stat(f[1]); err != nil {
				errs.Add("shared_state.redis.tls."+f[0], "%v", err)
			}
		}
		if (t.CertFile == "") != (t.KeyFile == "") {
			errs.Add("shared_state.redis.tls", "cert_file and key_file go together (the client certificate and its key)")
		}
	}
}

// ReadPasswordFile reads the store's password: the file's content less surrounding
// whitespace. The error names the file, never the content.
func ReadPasswordFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	p := strings.TrimSpace(string(b))
	if p == "" {
		return "", fmt.Errorf("%s: empty", path)
	}
	return p, nil
}
