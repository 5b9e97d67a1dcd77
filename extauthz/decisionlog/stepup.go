package decisionlog

import (
	"fmt"
	"strconv"
	"time"
)

// StepUp is what a step-up requirement (RFC 9470: a route's acr_values and max_age, or a
// policy's step-up decision) asked of the sign-in behind a token, and what the token said:
// for operators, who need required against actual to tell a misconfigured route from a user
// who has to sign in again. It holds no credential: acr values and a time.
type StepUp struct {
	// Applied is set when a requirement applied to the request (allowed or not).
	Applied bool
	// ACRValues are the required acr values, space-separated ("" for none); MaxAge the
	// required recency in seconds (-1 for none).
	ACRValues string
	MaxAge    int64
	// ACR and AuthTime are the token's acr and auth_time ("", zero time when it has none);
	// Leeway the issuer's, allowed on auth_time.
	ACR      string
	AuthTime time.Time
	Leeway   time.Duration
	// Now is when the requirement was checked.
	Now time.Time
}

// Age is how long ago the user authenticated, by the token's auth_time (0 when it has none).
func (s *StepUp) Age() time.Duration {
	if s.AuthTime.IsZero() {
		return 0
	}
	return s.Now.Sub(s.AuthTime)
}

// Detail says, in one line, what was required and what the token had, for the decision log's
// detail and `scopegate check`.
func (s *StepUp) Detail() string {
	var parts []string
	if s.ACRValues != "" {
		acr := strconv.Quote(s.ACR)
		if s.ACR == "" {
			acr = "none"
		}
		parts = append(parts, fmt.Sprintf("acr %s, want one of %q", acr, s.ACRValues))
	}
	if s.MaxAge >= 0 {
		want := fmt.Sprintf("max_age %ds (leeway %s)", s.MaxAge, s.Leeway)
		switch age := s.Age(); {
		case s.AuthTime.IsZero():
			parts = append(parts, "auth_time none, want "+want)
		case age < 0:
			parts = append(parts, fmt.Sprintf("auth_time %s is %s in the future, want %s (clock skew?)",
				s.AuthTime.UTC().Format(time.RFC3339), (-age).Truncate(time.Second), want))
		default:
			parts = append(parts, fmt.Sprintf("auth_time %s, %s ago, want %s",
				s.AuthTime.UTC().Format(time.RFC3339), age.Truncate(time.Second), want))
		}
	}
	out := ""
	for i, p := range parts {
		if i > 0 {
			out += "; "
		}
		out += p
	}
	return out
}

// appendStepUp appends ,"step_up":{...}: the requirement and the token's values.
func appendStepUp(b []byte, s *StepUp) []byte {
	b = append(b, `,"step_up":{`...)
	first := true
	sep := func() {
		if !first {
			b = append(b, ',')
		}
		first = false
	}
	if s.ACRValues != "" {
		sep()
		b = append(b, `"acr_values":`...)
		b = quote(b, s.ACRValues)
	}
	if s.MaxAge >= 0 {
		sep()
		b = append(b, `"max_age":`...)
		b = strconv.AppendInt(b, s.MaxAge, 10)
	}
	sep()
	b = append(b, `"acr":`...)
	b = quote(b, s.ACR)
	if !s.AuthTime.IsZero() {
		b = append(b, `,"auth_time":"`...)
		b = s.AuthTime.UTC().AppendFormat(b, time.RFC3339)
		b = append(b, `","auth_age_s":`...)
		b = strconv.AppendInt(b, int64(s.Age()/time.Second), 10)
	}
	return append(b, '}')
}
