package config

import (
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/scopegate/scopegate/internal/configcheck"
)

// PolicyBundle is policy.bundle: the policy as an OPA bundle pulled from a bundle server
// (OPA's bundle protocol: ETag, 304, polling with jitter, backoff on errors).
type PolicyBundle struct {
	URL     string        `yaml:"url"`
	Polling BundlePolling `yaml:"polling"`
	// Signing, when set, refuses unsigned and badly signed bundles. The same fields and
	// defaults as policy.signing (key_id "default").
	Signing *Signing `yaml:"signing"`
	// PersistDir keeps the last good bundle, so a restart with the server down still serves.
	PersistDir  string            `yaml:"persist_dir"`
	Credentials BundleCredentials `yaml:"credentials"`
}

// BundlePolling bounds the delay between two polls; OPA's downloader counts whole seconds.
type BundlePolling struct {
	MinDelay time.Duration `yaml:"min_delay"`
	MaxDelay time.Duration `yaml:"max_delay"`
}

// BundleCredentials authenticate scopegate to the bundle server.
type BundleCredentials struct {
	BearerTokenFile string `yaml:"bearer_token_file"`
	ClientCertFile  string `yaml:"client_cert_file"`
	ClientKeyFile   string `yaml:"client_key_file"`
	// CAFile is the CA bundle that signs the server's certificate (system roots when empty).
	CAFile string `yaml:"ca_file"`
}

func (b *PolicyBundle) applyDefaults() {
	if b.Polling.MinDelay == 0 && b.Polling.MaxDelay == 0 {
		b.Polling.MinDelay, b.Polling.MaxDelay = 60*time.Second, 120*time.Second
	}
	if b.Signing != nil && b.Signing.KeyID == "" {
		b.Signing.KeyID = DefaultKeyID
	}
}

func (b *PolicyBundle) validate(pol *Policy, errs *configcheck.Problems) {
	const f = "policy.bundle"
	// The value is shown as scheme, host and path only: its query may be a presigned signature.
	if u, err := url.Parse(b.URL); err != nil {
		errs.Add(f+".url", "not a URL")
	} else if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs.Add(f+".url", "want an http(s) URL with a host, got %q", (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String())
	}
	if pol.Path != "" {
		errs.Add(f, "policy.path and policy.bundle are exclusive: the policy comes from one place")
	}
	if pol.Watch {
		errs.Add("policy.watch", "not used with policy.bundle (bundles are polled)")
	}
	minD, maxD := b.Polling.MinDelay, b.Polling.MaxDelay
	switch {
	case minD < time.Second || minD%time.Second != 0:
		errs.Add(f+".polling.min_delay", "%s: want whole seconds, at least 1s", minD)
	case maxD < minD || maxD%time.Second != 0:
		errs.Add(f+".polling.max_delay", "%s: want whole seconds, at least min_delay (%s)", maxD, minD)
	}
	if s := b.Signing; s != nil {
		if s.PublicKeyFile == "" {
			errs.Add(f+".signing.public_key_file", "required when signing is set")
		} else {
			s.read(errs, f+".signing.public_key_file")
		}
	}
	c := b.Credentials
	for _, x := range [][2]string{{"bearer_token_file", c.BearerTokenFile}, {"client_cert_file", c.ClientCertFile},
		{"client_key_file", c.ClientKeyFile}, {"ca_file", c.CAFile}} {
		if x[1] == "" {
			continue
		}
		if _, err := os.Stat(x[1]); err != nil {
			errs.Add(fmt.Sprintf("%s.credentials.%s", f, x[0]), "%v", err)
		}
	}
	if (c.ClientCertFile == "") != (c.ClientKeyFile == "") {
		errs.Add(f+".credentials", "client_cert_file and client_key_file go together")
	}
	if c.BearerTokenFile != "" && c.ClientCertFile != "" {
		errs.Add(f+".credentials", "bearer_token_file or a client certificate, not both (OPA's bundle client takes one credential)")
	}
}
