package server

import (
	"errors"
	"fmt"
	"strings"

	"github.com/scopegate/scopegate/extauthz/jwks"
)

// keysReadiness puts each issuer's key status (kids, source, fetched_at, last_error) into
// into and says which issuers have no keys yet, with why each one's latest fetch failed.
func keysReadiness(sources []*jwks.Source, into map[string]jwks.Status) error {
	var missing, why []string
	for _, src := range sources {
		st := src.Status()
		into[src.Name()] = st
		if src.Ready() {
			continue
		}
		missing = append(missing, src.Name())
		if st.LastError != "" {
			why = append(why, src.Name()+": "+st.LastError)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	msg := fmt.Sprintf("no keys yet for issuer(s) %v", missing)
	if len(why) > 0 {
		msg += " (last error: " + strings.Join(why, "; ") + ")"
	}
	return errors.New(msg)
}
