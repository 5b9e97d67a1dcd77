package jwks

import (
	"time"
)

// status is what the source remembers of its fetches, for Status.
type status struct {
	origin    string    // where keys come from: the JWKS URL (safeURL) or the jwks_file
	fetchedAt time.Time // when the key set in force was fetched or read
	lastErr   string    // the latest attempt's error, while it is the latest
	lastErrAt time.Time
}

// Status is what /readyz shows of one issuer's keys: which were last fetched, from where and
// when, and why the latest attempt failed if it did. It holds no key material and no secret
// (URLs lose their password and query).
type Status struct {
	Source string   `json:"source"`
	KIDs   []string `json:"kids"`
	// FetchedAt is when the key set in force was fetched (or the file read); absent before
	// the first success.
	FetchedAt *time.Time `json:"fetched_at,omitempty"`
	// LastError is why the latest fetch failed, when it did (the set in force stays);
	// cleared by the next success.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
}

// Status reports the key set in force and the latest fetch.
func (s *Source) Status() Status {
	s.mu.Lock()
	st := s.status
	s.mu.Unlock()
	out := Status{Source: st.origin, KIDs: s.Current().KIDs(), LastError: st.lastErr}
	if !st.fetchedAt.IsZero() {
		t := st.fetchedAt.UTC().Truncate(time.Millisecond)
		out.FetchedAt = &t
	}
	if st.lastErr != "" {
		t := st.lastErrAt.UTC().Truncate(time.Millisecond)
		out.LastErrorAt = &t
	}
	return out
}

func (s *Source) noteError(err error) {
	s.mu.Lock()
	s.status.lastErr, s.status.lastErrAt = err.Error(), time.Now()
	s.mu.Unlock()
}

func (s *Source) setOrigin(origin string) {
	s.mu.Lock()
	s.status.origin = origin
	s.mu.Unlock()
}
