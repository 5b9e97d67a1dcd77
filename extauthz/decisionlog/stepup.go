package decisionlog

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/jsonenc"
)

// StepUp is what a step-up requirement (RFC 9470: a route's acr_values and max_age, or a
// policy's step-up decision) asked of the sign-in behind a token; what the token said is the
// Record's Identity (acr, auth_time, the issuer's leeway). For operators, who need required
// against actual to tell a misconfigured route from a user who has to sign in again. It holds
// no credential: acr values and times.
type StepUp struct {
	// Applied is set when a requirement applied to the request (allowed or not).
	Applied bool
	// ACRValues are the required acr values, space-separated ("" for none); MaxAge the
	// required recency in seconds (-1 for none).
	ACRValues string
	MaxAge    int64
	// Now is when the requirement was checked.
	Now time.Time
}

// Age is how long before Now the user authenticated, by id's auth_time (0 when it has none).
func (s *StepUp) Age(id *token.Identity) time.Duration {
	if id == nil || id.AuthTime.IsZero() {
		return 0
	}
	return s.Now.Sub(id.AuthTime)
}

// Detail says, in one line, what was required and what id had, for the decision log's detail
// and `scopegate check`.
func (s *StepUp) Detail(id *token.Identity) string {
	var acr string
	var authTime time.Time
	var leeway time.Duration
	if id != nil {
		acr, authTime, leeway = id.ACR, id.AuthTime, id.Leeway
	}
	var parts []string
	if s.ACRValues != "" {
		have := "none"
		if acr != "" {
			have = strconv.Quote(acr)
		}
		parts = append(parts, fmt.Sprintf("acr %s, want one of %q", have, s.ACRValues))
	}
	if s.MaxAge >= 0 {
		want := fmt.Sprintf("max_age %ds (leeway %s)", s.MaxAge, leeway)
		switch age := s.Age(id); {
		case authTime.IsZero():
			parts = append(parts, "auth_time none, want "+want)
		case age < 0:
			parts = append(parts, fmt.Sprintf("auth_time %s is %s in the future, want %s (clock skew?)",
				authTime.UTC().Format(time.RFC3339), (-age).Truncate(time.Second), want))
		default:
			parts = append(parts, fmt.Sprintf("auth_time %s, %s ago, want %s",
				authTime.UTC().Format(time.RFC3339), age.Truncate(time.Second), want))
		}
	}
	return strings.Join(parts, "; ")
}

// appendStepUp appends ,"step_up":{...}: the requirement and id's acr and auth_time.
func appendStepUp(b []byte, s *StepUp, id *token.Identity) []byte {
	b = append(b, `,"step_up":{`...)
	if s.ACRValues != "" {
		b = append(b, `"acr_values":`...)
		b = jsonenc.AppendString(b, s.ACRValues)
		b = append(b, ',')
	}
	if s.MaxAge >= 0 {
		b = append(b, `"max_age":`...)
		b = strconv.AppendInt(b, s.MaxAge, 10)
		b = append(b, ',')
	}
	b = append(b, `"acr":`...)
	if id == nil {
		return append(b, `""}`...)
	}
	b = jsonenc.AppendString(b, id.ACR)
	if !id.AuthTime.IsZero() {
		b = append(b, `,"auth_time":"`...)
		b = id.AuthTime.UTC().AppendFormat(b, time.RFC3339)
		b = append(b, `","auth_age_s":`...)
		b = strconv.AppendInt(b, int64(s.Age(id)/time.Second), 10)
	}
	return append(b, '}')
}
