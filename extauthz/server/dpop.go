package server

import (
	"crypto/rand"
	"errors"
	"log/slog"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/dpop"
	"github.com/scopegate/scopegate/extauthz/sharedstate"
)

// DPoPVerifier builds the DPoP proof verifier the config asks for. With dpop_nonce and no
// dpop_nonce_key_file, the nonce key is random: this replica then refuses the nonces of every
// other, which is fine for one instance and logged as a warning.
// With a shared state store, proofs are recorded there (shared_state).
func DPoPVerifier(cfg *config.Config, log *slog.Logger, shared *sharedstate.Store) (*dpop.Verifier, error) {
	o := dpop.Options{Algorithms: cfg.DPoPAlgorithms, IATWindow: cfg.DPoPIATWindow, ReplayEntries: cfg.DPoPReplayCacheEntries,
		ReplayEntriesPerKey: cfg.DPoPReplayEntriesPerKey}
	if shared != nil {
		o.Shared, o.SharedFallbackLocal = shared, cfg.SharedState.OnUnavailable == config.OnUnavailableLocal
	}
	if cfg.DPoPNonce {
		var key []byte
		if cfg.DPoPNonceKeyFile != "" {
			key = cfg.DPoPNonceKey // read by config.Load
			if len(key) < 32 {
				return nil, errors.New("dpop_nonce_key_file: the key was not read (a config that did not pass Validate)")
			}
		} else {
			key = make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return nil, err
			}
			log.Warn("dpop_nonce without dpop_nonce_key_file: the nonce key is random, so other authz replicas will refuse this one's nonces")
		}
		o.Nonces = dpop.NewNonces(key, 0)
	}
	return dpop.New(o)
}
