package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const accessToken = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"

var now = time.Unix(1_900_000_000, 0)

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func verifier(t testing.TB, o Options) *Verifier {
	if o.Now == nil {
		o.Now = func() time.Time { return now }
	}
	v, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func good() ProofClaims {
	return ProofClaims{Method: "GET", URI: "https://api.example.com/orders", AccessToken: accessToken, IssuedAt: now}
}

func sign(t testing.TB, key crypto.Signer, alg string, c ProofClaims) string {
	p, err := Sign(key, alg, c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// forge builds a proof with any header and claims, signed by key with method (nil: no signature).
func forge(t testing.TB, header map[string]any, claims jwt.MapClaims, method jwt.SigningMethod, key any) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	tok.Header = header
	s, err := tok.SigningString()
	if err != nil {
		t.Fatal(err)
	}
	if method == nil {
		return s + "."
	}
	sig, err := method.Sign(s, key)
	if err != nil {
		t.Fatal(err)
	}
	return s + "." + b64.EncodeToString(sig)
}

func TestVerify(t *testing.T) {
	key := mustKey(t)
	other := mustKey(t)
	jkt, _ := Thumbprint(key)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edJKT, _ := Thumbprint(edKey)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaJKT, _ := Thumbprint(rsaKey)
	with := func(edit func(*ProofClaims)) ProofClaims { c := good(); edit(&c); return c }
	claims := func() jwt.MapClaims {
		return jwt.MapClaims{"jti": "j", "htm": "GET", "htu": "https://api.example.com/orders", "iat": now.Unix(), "ath": TokenHash(accessToken)}
	}
	hdr := func(alg string, jwk any) map[string]any {
		return map[string]any{"typ": "dpop+jwt", "alg": alg, "jwk": jwk}
	}
	privJWK := privateJWK(key)

	tests := []struct {
		name   string
		proof  string
		uri    string // "" = the good URI
		method string // "" = GET
		jkt    string // "" = jkt
		reason string // "" = accepted
	}{
		{name: "valid ES256", proof: sign(t, key, "ES256", good())},
		{name: "valid EdDSA", proof: sign(t, edKey, "EdDSA", good()), jkt: edJKT},
		{name: "valid RS256", proof: sign(t, rsaKey, "RS256", good()), jkt: rsaJKT},
		{name: "valid PS256", proof: sign(t, rsaKey, "PS256", good()), jkt: rsaJKT},
		{name: "query and fragment ignored", proof: sign(t, key, "ES256", good()), uri: "https://api.example.com/orders"},
		{name: "htu normalised: case, default port, percent-encoding", proof: sign(t, key, "ES256", with(func(c *ProofClaims) { c.URI = "HTTPS://API.Example.com:443/%6frders" })), uri: "https://api.example.com/orders"},
		{name: "htu with query in the proof", proof: sign(t, key, "ES256", with(func(c *ProofClaims) { c.URI = "https://api.example.com/orders?x=1#f" }))},
		{name: "wrong htm", proof: sign(t, key, "ES256", good()), method: "POST", reason: ReasonInvalidProof},
		{name: "htm case differs", proof: sign(t, key, "ES256", with(func(c *ProofClaims) { c.Method = "get" })), reason: ReasonInvalidProof},
		{name: "htu of another host", proof: sign(t, key, "ES256", with(func(c *ProofClaims) { c.URI = "https://evil.example.com/orders" })), reason: ReasonInvalidProof},
		{name: "htu of another path", proof: sign(t, key, "ES256", with(func(c *ProofClaims) { c.URI = "https://api.example.com/admin" })), reason: ReasonInvalidProof},
		{name: "htu of another scheme", proof: sign(t, key, "ES256", with(func(c *ProofClaims) { c.URI = "http://api.example.com/orders" })), reason: ReasonInvalidProof},
		{name: "htu of another port", proof: sign(t, key, "ES256", with(func(c *ProofClaims) { c.URI = "https://api.example.com:8443/orders" })), reason: ReasonInvalidProof},
		{name: "stale iat", proof: sign(t, key, "ES256", with(func(c *ProofClaims) { c.IssuedAt = now.Add(-2 * time.Minute) })), reason: ReasonInvalidProof},
		{name: "future iat", proof: sign(t, key, "ES256", with(func(c *ProofClaims) { c.IssuedAt = now.Add(2 * time.Minute) })), reason: ReasonInvalidProof},
		{name: "iat within the window", proof: sign(t, key, "ES256", with(func(c *ProofClaims) { c.IssuedAt = now.Add(-50 * time.Second) }))},
		{name: "missing ath", proof: sign(t, key, "ES256", with(func(c *ProofClaims) { c.AccessToken = "" })), reason: ReasonInvalidProof},
		{name: "ath of another token", proof: sign(t, key, "ES256", with(func(c *ProofClaims) { c.AccessToken = "other" })), reason: ReasonInvalidProof},
		{name: "proof key is not the token's cnf.jkt", proof: sign(t, other, "ES256", good()), reason: ReasonKeyMismatch},
		{name: "private jwk members", proof: forge(t, hdr("ES256", privJWK), claims(), jwt.SigningMethodES256, key), reason: ReasonInvalidProof},
		{name: "alg none", proof: forge(t, hdr("none", publicJWK(key)), claims(), nil, nil), reason: ReasonInvalidProof},
		{name: "HS256", proof: forge(t, hdr("HS256", map[string]any{"kty": "oct", "k": "c2VjcmV0"}), claims(), jwt.SigningMethodHS256, []byte("secret")), reason: ReasonInvalidProof},
		{name: "signed with another key than its jwk", proof: forge(t, hdr("ES256", publicJWK(key)), claims(), jwt.SigningMethodES256, other), reason: ReasonInvalidProof},
		{name: "jwk type does not fit alg", proof: forge(t, hdr("EdDSA", publicJWK(key)), claims(), jwt.SigningMethodES256, key), reason: ReasonInvalidProof},
		{name: "no jwk", proof: forge(t, map[string]any{"typ": "dpop+jwt", "alg": "ES256"}, claims(), jwt.SigningMethodES256, key), reason: ReasonInvalidProof},
		{name: "wrong typ", proof: forge(t, map[string]any{"typ": "JWT", "alg": "ES256", "jwk": publicJWK(key)}, claims(), jwt.SigningMethodES256, key), reason: ReasonInvalidProof},
		{name: "no jti", proof: forge(t, hdr("ES256", publicJWK(key)), func() jwt.MapClaims { c := claims(); delete(c, "jti"); return c }(), jwt.SigningMethodES256, key), reason: ReasonInvalidProof},
		{name: "iat not a number", proof: forge(t, hdr("ES256", publicJWK(key)), func() jwt.MapClaims { c := claims(); c["iat"] = "now"; return c }(), jwt.SigningMethodES256, key), reason: ReasonInvalidProof},
		{name: "oversized proof", proof: strings.Repeat("a", MaxProofBytes+1), reason: ReasonInvalidProof},
		{name: "not a JWS", proof: "a.b", reason: ReasonInvalidProof},
		{name: "header not JSON", proof: "bm90IGpzb24.e30.c2ln", reason: ReasonInvalidProof},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := verifier(t, Options{})
			r := Request{Proof: tt.proof, Method: "GET", URI: "https://api.example.com/orders", TokenHash: TokenHash(accessToken), JKT: jkt}
			if tt.uri != "" {
				r.URI = tt.uri
			}
			if tt.method != "" {
				r.Method = tt.method
			}
			if tt.jkt != "" {
				r.JKT = tt.jkt
			}
			err := v.Verify(r)
			got := ""
			if err != nil {
				got = err.(*Error).Reason
				if strings.Contains(err.Error(), tt.proof) || strings.Contains(err.Error(), accessToken) {
					t.Fatal("the error echoes the proof or the token")
				}
			}
			if got != tt.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tt.reason)
			}
		})
	}
}

func TestReplay(t *testing.T) {
	key := mustKey(t)
	jkt, _ := Thumbprint(key)
	clock := now
	v := verifier(t, Options{ReplayEntries: 2, Now: func() time.Time { return clock }})
	req := func(p string) Request {
		return Request{Proof: p, Method: "GET", URI: "https://api.example.com/orders", TokenHash: TokenHash(accessToken), JKT: jkt}
	}
	p := sign(t, key, "ES256", good())
	if err := v.Verify(req(p)); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(req(p)); err == nil || err.(*Error).Reason != ReasonReplayed {
		t.Fatalf("replayed proof: %v", err)
	}
	// A second fresh proof fills the generation; a third is refused rather than forgetting one.
	if err := v.Verify(req(sign(t, key, "ES256", good()))); err != nil {
		t.Fatal(err)
	}
	err := v.Verify(req(sign(t, key, "ES256", good())))
	if e, ok := err.(*Error); !ok || e.Reason != ReasonReplayFull || !e.Unavailable {
		t.Fatalf("full cache: %v", err)
	}
	// Two windows later the first generation has rotated out; the replayed proof is still
	// refused by its iat, never by a forgotten jti.
	clock = clock.Add(2*DefaultIATWindow + time.Second)
	if err := v.Verify(req(p)); err == nil || err.(*Error).Reason != ReasonInvalidProof {
		t.Fatalf("old proof after rotation: %v", err)
	}
	if err := v.Verify(req(sign(t, key, "ES256", with(func(c *ProofClaims) { c.IssuedAt = clock })))); err != nil {
		t.Fatalf("fresh proof after rotation: %v", err)
	}
}

func with(edit func(*ProofClaims)) ProofClaims { c := good(); edit(&c); return c }

func TestNonces(t *testing.T) {
	key := mustKey(t)
	jkt, _ := Thumbprint(key)
	secret := []byte("0123456789abcdef0123456789abcdef")
	clock := now
	v := verifier(t, Options{Nonces: NewNonces(secret, time.Minute), Now: func() time.Time { return clock }})
	// Another replica with the same key accepts what this one issued.
	replica := verifier(t, Options{Nonces: NewNonces(secret, time.Minute), Now: func() time.Time { return clock }})
	req := func(c ProofClaims) Request {
		return Request{Proof: sign(t, key, "ES256", c), Method: "GET", URI: "https://api.example.com/orders", TokenHash: TokenHash(accessToken), JKT: jkt}
	}
	err := v.Verify(req(good()))
	e, ok := err.(*Error)
	if !ok || e.Reason != ReasonUseNonce || e.Nonce == "" {
		t.Fatalf("no nonce: %v", err)
	}
	if err := replica.Verify(req(with(func(c *ProofClaims) { c.Nonce = e.Nonce }))); err != nil {
		t.Fatalf("nonce from another replica: %v", err)
	}
	clock = clock.Add(30 * time.Second) // the next step (steps start at multiples of a minute): still good
	if err := v.Verify(req(with(func(c *ProofClaims) { c.Nonce = e.Nonce; c.IssuedAt = clock }))); err != nil {
		t.Fatalf("nonce of the previous step: %v", err)
	}
	clock = clock.Add(time.Minute) // two steps on: stale
	if err := v.Verify(req(with(func(c *ProofClaims) { c.Nonce = e.Nonce; c.IssuedAt = clock }))); err == nil || err.(*Error).Reason != ReasonUseNonce {
		t.Fatalf("stale nonce: %v", err)
	}
	forged := NewNonces([]byte("another key, another key, another"), time.Minute).Current(clock)
	if err := v.Verify(req(with(func(c *ProofClaims) { c.Nonce = forged; c.IssuedAt = clock }))); err == nil || err.(*Error).Reason != ReasonUseNonce {
		t.Fatalf("nonce under another key: %v", err)
	}
}

func TestNewRefusesSymmetric(t *testing.T) {
	for _, alg := range []string{"HS256", "none", "XX"} {
		if _, err := New(Options{Algorithms: []string{alg}}); err == nil {
			t.Errorf("%s accepted", alg)
		}
	}
}

func FuzzVerify(f *testing.F) {
	key := mustKey(f)
	jkt, _ := Thumbprint(key)
	f.Add(sign(f, key, "ES256", good()))
	f.Add("a.b.c")
	f.Add(forge(f, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": map[string]any{"kty": "EC", "crv": "P-256", "x": 1}}, jwt.MapClaims{}, nil, nil))
	v := verifier(f, Options{})
	f.Fuzz(func(t *testing.T, proof string) {
		err := v.Verify(Request{Proof: proof, Method: "GET", URI: "https://api.example.com/orders", TokenHash: TokenHash(accessToken), JKT: jkt})
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("not an *Error: %v", err)
			}
		}
	})
}
