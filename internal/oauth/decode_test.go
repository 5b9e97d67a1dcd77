package oauth

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	// {"alg":"none","typ":"at+jwt"} . {"sub":"alice","exp":2000000000}
	tok := "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiJhbGljZSIsImV4cCI6MjAwMDAwMDAwMH0.sig"
	tests := []struct {
		name, token, wantErr string
	}{
		{"ok", tok, ""},
		{"bearer prefix", "Bearer " + tok, ""},
		{"two parts", "a.b", "3"},
		{"bad base64", "!!.e30.x", "JWT header"},
		{"claims not an object", "e30.WzFd.x", "JWT claims"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Decode(tt.token, time.Unix(1999999000, 0))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Header["typ"] != "at+jwt" || d.Claims["sub"] != "alice" || d.Times["exp"] != "2033-05-18T03:33:20Z" || d.Expires != "in 16m40s" {
				t.Fatalf("decoded %+v", d)
			}
		})
	}
}

func TestDecodeSaysWhenItExpired(t *testing.T) {
	for _, tt := range []struct {
		left time.Duration
		want string
	}{{43 * time.Second, "expired 43s ago"}, {-5 * time.Minute, "in 5m0s"}, {0, "expired 0s ago"}} {
		// a token with exp = 2000000000, read tt.left after (or before) it
		claims := base64.RawURLEncoding.EncodeToString([]byte(`{"exp":2000000000}`))
		d, err := Decode("e30."+claims+".x", time.Unix(2000000000, 0).Add(tt.left))
		if err != nil || d.Expires != tt.want {
			t.Errorf("%v after exp: %q, %v; want %q", tt.left, d.Expires, err, tt.want)
		}
	}
}

func TestDecodeClaims(t *testing.T) {
	// {"alg":"none"} . {"sub":"alice","exp":2000000000}
	claims, err := DecodeClaims("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6MjAwMDAwMDAwMH0.sig")
	if err != nil || claims["sub"] != "alice" || claims["exp"].(interface{ String() string }).String() != "2000000000" {
		t.Fatalf("claims %v, %v", claims, err)
	}
	if _, err := DecodeClaims("a.b"); err == nil || !strings.Contains(err.Error(), "want 3") {
		t.Errorf("two parts: %v", err)
	}
	if _, err := DecodeClaims("e30.!!.x"); err == nil || !strings.Contains(err.Error(), "JWT claims") {
		t.Errorf("bad base64: %v", err)
	}
}

func TestUnverifiedPayload(t *testing.T) {
	if p, err := UnverifiedPayload("e30.eyJhIjoxfQ.sig"); err != nil || string(p) != `{"a":1}` {
		t.Errorf("payload %q, %v", p, err)
	}
	for _, bad := range []string{"e30.e30", "e30.!!.x", "a.b.c.d"} {
		if _, err := UnverifiedPayload(bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}
