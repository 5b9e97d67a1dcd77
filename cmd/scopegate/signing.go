package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/spf13/pflag"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/server"
)

// signingFlags let a command that reads a policy (policy impact, policy test, lint, check)
// read a signed bundle: the key as flags, or authz's own config (policy.signing, else
// policy.bundle.signing), so the preview verifies what authz would verify.
type signingFlags struct {
	key, keyID, scope string
	authzConfig       string // --config, where the command has no other use for it
}

// add registers --verification-key, --key-id and --signing-scope (the signature's scope
// claim; --scope is the route's scopes on check). With config, --config FILE too.
func (s *signingFlags) add(fs *pflag.FlagSet, config bool) {
	fs.StringVar(&s.key, "verification-key", "", "PEM public key that signed the bundle (as authz's policy.signing.public_key_file)")
	fs.StringVar(&s.keyID, "key-id", "", `the key's name (policy.signing.key_id; default "default")`)
	fs.StringVar(&s.scope, "signing-scope", "", "the scope claim the signature must carry (policy.signing.scope)")
	if config {
		fs.StringVar(&s.authzConfig, "config", "", "authz config: verify with its policy.signing (or policy.bundle.signing), and take its policy.query and error_status")
	}
}

// signing is the signing block the flags describe, or that of cfg (nil: no verification).
func (s *signingFlags) signing(cfg *config.Config) (*config.Signing, error) {
	if s.key == "" {
		if s.keyID != "" || s.scope != "" {
			return nil, usageErr(errors.New("--key-id and --signing-scope go with --verification-key"))
		}
		if cfg == nil {
			return nil, nil
		}
		if cfg.Policy.Signing != nil {
			return cfg.Policy.Signing, nil
		}
		if cfg.Policy.Bundle != nil {
			return cfg.Policy.Bundle.Signing, nil
		}
		return nil, nil
	}
	sc := &config.Signing{PublicKeyFile: s.key, KeyID: s.keyID, Scope: s.scope}
	if sc.KeyID == "" {
		sc.KeyID = config.DefaultKeyID
	}
	return sc, nil
}

// verification is OPA's verification config for the flags (and cfg); nil without a key.
func (s *signingFlags) verification(cfg *config.Config) (*bundle.VerificationConfig, error) {
	sc, err := s.signing(cfg)
	if err != nil || sc == nil {
		return nil, err
	}
	field := "--verification-key"
	switch {
	case s.key != "":
	case cfg.Policy.Signing != nil:
		field = "--config " + s.authzConfig + ": policy.signing.public_key_file"
	default:
		field = "--config " + s.authzConfig + ": policy.bundle.signing.public_key_file"
	}
	if s.key != "" {
		// The flag's key is read here; a config's was read when it was loaded.
		if sc.PublicKey, err = os.ReadFile(s.key); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
	}
	return policy.Verification(server.PolicySigning(sc, field))
}

// loadConfig reads --config, if given.
func (s *signingFlags) loadConfig() (*config.Config, error) {
	if s.authzConfig == "" {
		return nil, nil
	}
	cfg, err := config.Load(s.authzConfig)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	return cfg, nil
}
