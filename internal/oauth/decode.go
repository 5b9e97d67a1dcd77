package oauth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Decoded is a JWT's header and claims, decoded locally. The signature is NOT verified: this is
// for looking at a token, never for trusting it.
type Decoded struct {
	Header map[string]any `json:"header"`
	Claims map[string]any `json:"claims"`
	// Times are the NumericDate claims (exp, iat, nbf, auth_time) as readable times.
	Times map[string]string `json:"times,omitempty"`
	// Expires says when exp is, from now: "in 4m17s", or "expired 43s ago".
	Expires string `json:"expires,omitempty"`
}

// Decode splits a compact JWS and decodes its header and claims. It never contacts anything.
func Decode(token string, now time.Time) (*Decoded, error) {
	parts, err := split(token)
	if err != nil {
		return nil, err
	}
	d := &Decoded{}
	if err := decodePart(parts[0], &d.Header); err != nil {
		return nil, fmt.Errorf("JWT header: %w", err)
	}
	if err := decodePart(parts[1], &d.Claims); err != nil {
		return nil, fmt.Errorf("JWT claims: %w", err)
	}
	for _, name := range []string{"exp", "iat", "nbf", "auth_time"} {
		n, ok := d.Claims[name].(json.Number)
		if !ok {
			continue
		}
		secs, err := n.Int64()
		if err != nil {
			continue
		}
		if d.Times == nil {
			d.Times = map[string]string{}
		}
		t := time.Unix(secs, 0).UTC()
		d.Times[name] = t.Format(time.RFC3339)
		if name == "exp" {
			d.Expires = expires(t.Sub(now).Truncate(time.Second))
		}
	}
	return d, nil
}

// DecodeClaims decodes a compact JWS's claims without verifying anything (numbers kept
// exact, as json.Number): for showing what a token says, never for trusting it.
func DecodeClaims(token string) (map[string]any, error) {
	parts, err := split(token)
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	if err := decodePart(parts[1], &claims); err != nil {
		return nil, fmt.Errorf("JWT claims: %w", err)
	}
	return claims, nil
}

// UnverifiedPayload is the payload of a compact JWS, decoded without verifying anything: for
// reading what a JWT says where the reader verifies it elsewhere (or never trusts it).
func UnverifiedPayload(jws string) ([]byte, error) {
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("not a JWT: %d dot-separated parts, want 3", len(parts))
	}
	return base64.RawURLEncoding.DecodeString(parts[1])
}

// split takes a token as a person pastes it (spaces, a "Bearer " prefix) into its three parts.
func split(token string) ([]string, error) {
	token = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(token), "Bearer "))
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("not a JWT: %d dot-separated parts, want 3", len(parts))
	}
	return parts, nil
}

// expires words the time left until exp for a person reading it.
func expires(left time.Duration) string {
	if left <= 0 {
		return "expired " + (-left).String() + " ago"
	}
	return "in " + left.String()
}

func decodePart(s string, v *map[string]any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // keep NumericDates exact
	if err := dec.Decode(v); err != nil {
		return err
	}
	if *v == nil {
		return errors.New("not a JSON object")
	}
	return nil
}
