package oauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAsymmetric(t *testing.T) {
	for _, alg := range []string{"RS256", "PS512", "ES384", "EdDSA"} {
		if !Asymmetric(alg) {
			t.Errorf("%s refused", alg)
		}
	}
	for _, alg := range []string{"HS256", "none", "", "es256"} {
		if Asymmetric(alg) {
			t.Errorf("%q accepted", alg)
		}
	}
}

func TestThumbprints(t *testing.T) {
	// RFC 8705 §3.1 and RFC 9449 §4.2: base64url SHA-256, unpadded (43 characters).
	if got := CertificateThumbprint([]byte("der")); len(got) != 43 || strings.ContainsAny(got, "+/=") {
		t.Errorf("x5t#S256 %q", got)
	}
	if TokenHash("a") != CertificateThumbprint([]byte("a")) {
		t.Error("ath and x5t#S256 are the same hash of different inputs")
	}
}

// A proof signed at the token endpoint is checked without ath and can be used once.
func TestProofAtTokenEndpoint(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	proof, err := SignProof(key, "ES256", ProofClaims{Method: "POST", URI: "https://idp.example.com/token", IssuedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewProofChecker(nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Check(proof, "POST", "https://idp.example.com/token", now)
	jkt, _ := Thumbprint(key)
	if err != nil || p.JKT != jkt || p.ATH != "" || p.JTI == "" {
		t.Fatalf("Check = %+v, %v; want jkt %s", p, err, jkt)
	}
	if _, err := c.Check(proof, "POST", "https://idp.example.com/other", now); err == nil {
		t.Error("another URI accepted")
	}
	r := NewReplayCache(1000, 1, ReplaySpan(c.Window()))
	if err := r.Add(p.JKT, p.JTI, now); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(p.JKT, p.JTI, now); !errors.Is(err, ErrProofReplayed) {
		t.Errorf("replay: %v", err)
	}
	if err := r.Add(p.JKT, "another", now); !errors.Is(err, ErrProofKeyQuota) {
		t.Errorf("over the key's quota: %v", err)
	}
	if _, err := NewProofChecker([]string{"HS256"}, 0); err == nil {
		t.Error("HS256 accepted")
	}
}
