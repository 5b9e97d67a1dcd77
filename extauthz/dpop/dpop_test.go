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

	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/oauth"
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

func good() oauth.ProofClaims {
	return oauth.ProofClaims{Method: "GET", URI: "https://api.example.com/orders", AccessToken: accessToken, IssuedAt: now}
}

func sign(t testing.TB, key crypto.Signer, alg string, c oauth.ProofClaims) string {
	p, err := oauth.SignProof(key, alg, c)
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
	jkt, _ := oauth.Thumbprint(key)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edJKT, _ := oauth.Thumbprint(edKey)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaJKT, _ := oauth.Thumbprint(rsaKey)
	with := func(edit func(*oauth.ProofClaims)) oauth.ProofClaims { c := good(); edit(&c); return c }
	claims := func() jwt.MapClaims {
		return jwt.MapClaims{"jti": "j", "htm": "GET", "htu": "https://api.example.com/orders", "iat": now.Unix(), "ath": oauth.TokenHash(accessToken)}
	}
	hdr := func(alg string, jwk any) map[string]any {
		return map[string]any{"typ": "dpop+jwt", "alg": alg, "jwk": jwk}
	}
	privJWK := privateJWK(key)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024JKT, _ := oauth.Thumbprint(rsa1024)

	tests := []struct {
		name   string
		proof  string
		uri    string // "" = the good URI
		method string // "" = GET
		jkt    string // "" = jkt
		reason string // "" = accepted
		desc   string // a substring the refusal's description must hold ("" = any)
	}{
		{name: "valid ES256", proof: sign(t, key, "ES256", good())},
		{name: "valid EdDSA", proof: sign(t, edKey, "EdDSA", good()), jkt: edJKT},
		{name: "valid RS256", proof: sign(t, rsaKey, "RS256", good()), jkt: rsaJKT},
		{name: "valid PS256", proof: sign(t, rsaKey, "PS256", good()), jkt: rsaJKT},
		{name: "query and fragment ignored", proof: sign(t, key, "ES256", good()), uri: "https://api.example.com/orders"},
		{name: "htu normalised: case, default port, percent-encoding", proof: sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.URI = "HTTPS://API.Example.com:443/%6frders" })), uri: "https://api.example.com/orders"},
		{name: "htu with query in the proof", proof: sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.URI = "https://api.example.com/orders?x=1#f" }))},
		{name: "wrong htm", proof: sign(t, key, "ES256", good()), method: "POST", reason: contract.ReasonInvalidDPoPProof},
		{name: "htm case differs", proof: sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.Method = "get" })), reason: contract.ReasonInvalidDPoPProof},
		{name: "htu of another host", proof: sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.URI = "https://evil.example.com/orders" })), reason: contract.ReasonInvalidDPoPProof},
		{name: "htu of another path", proof: sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.URI = "https://api.example.com/admin" })), reason: contract.ReasonInvalidDPoPProof},
		{name: "htu of another scheme", proof: sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.URI = "http://api.example.com/orders" })), reason: contract.ReasonInvalidDPoPProof},
		{name: "htu of another port", proof: sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.URI = "https://api.example.com:8443/orders" })), reason: contract.ReasonInvalidDPoPProof},
		{name: "stale iat", proof: sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.IssuedAt = now.Add(-2 * time.Minute) })), reason: contract.ReasonInvalidDPoPProof},
		{name: "future iat", proof: sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.IssuedAt = now.Add(2 * time.Minute) })), reason: contract.ReasonInvalidDPoPProof},
		{name: "iat within the window", proof: sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.IssuedAt = now.Add(-50 * time.Second) }))},
		{name: "missing ath", proof: sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.AccessToken = "" })), reason: contract.ReasonInvalidDPoPProof},
		{name: "ath of another token", proof: sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.AccessToken = "other" })), reason: contract.ReasonInvalidDPoPProof},
		{name: "proof key is not the token's cnf.jkt", proof: sign(t, other, "ES256", good()), reason: contract.ReasonDPoPKeyMismatch},
		{name: "private jwk members", proof: forge(t, hdr("ES256", privJWK), claims(), jwt.SigningMethodES256, key), reason: contract.ReasonInvalidDPoPProof},
		{name: "alg none", proof: forge(t, hdr("none", publicJWK(key)), claims(), nil, nil), reason: contract.ReasonInvalidDPoPProof},
		{name: "HS256", proof: forge(t, hdr("HS256", map[string]any{"kty": "oct", "k": "c2VjcmV0"}), claims(), jwt.SigningMethodHS256, []byte("secret")), reason: contract.ReasonInvalidDPoPProof},
		{name: "signed with another key than its jwk", proof: forge(t, hdr("ES256", publicJWK(key)), claims(), jwt.SigningMethodES256, other), reason: contract.ReasonInvalidDPoPProof},
		{name: "jwk type does not fit alg", proof: forge(t, hdr("EdDSA", publicJWK(key)), claims(), jwt.SigningMethodES256, key), reason: contract.ReasonInvalidDPoPProof},
		{name: "no jwk", proof: forge(t, map[string]any{"typ": "dpop+jwt", "alg": "ES256"}, claims(), jwt.SigningMethodES256, key), reason: contract.ReasonInvalidDPoPProof},
		{name: "wrong typ", proof: forge(t, map[string]any{"typ": "JWT", "alg": "ES256", "jwk": publicJWK(key)}, claims(), jwt.SigningMethodES256, key), reason: contract.ReasonInvalidDPoPProof},
		{name: "no jti", proof: forge(t, hdr("ES256", publicJWK(key)), func() jwt.MapClaims { c := claims(); delete(c, "jti"); return c }(), jwt.SigningMethodES256, key), reason: contract.ReasonInvalidDPoPProof},
		{name: "iat not a number", proof: forge(t, hdr("ES256", publicJWK(key)), func() jwt.MapClaims { c := claims(); c["iat"] = "now"; return c }(), jwt.SigningMethodES256, key), reason: contract.ReasonInvalidDPoPProof},
		{name: "oversized proof", proof: strings.Repeat("a", oauth.MaxProofBytes+1), reason: contract.ReasonInvalidDPoPProof},
		{name: "not a JWS", proof: "a.b", reason: contract.ReasonInvalidDPoPProof},
		{name: "header not JSON", proof: "bm90IGpzb24.e30.c2ln", reason: contract.ReasonInvalidDPoPProof},
		// RFC 7515 §4.1.11: a crit extension the verifier does not understand (it understands
		// none) makes the proof invalid, whatever the rest says.
		{name: "crit naming an extension", proof: forge(t, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": publicJWK(key), "crit": []string{"exp"}, "exp": 1}, claims(), jwt.SigningMethodES256, key),
			reason: contract.ReasonInvalidDPoPProof, desc: "critical"},
		{name: "crit empty", proof: forge(t, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": publicJWK(key), "crit": []string{}}, claims(), jwt.SigningMethodES256, key),
			reason: contract.ReasonInvalidDPoPProof, desc: "critical"},
		// Size limits a client meets (README "Sender-constrained tokens").
		{name: "jti at the limit", proof: sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.JTI = strings.Repeat("j", oauth.MaxJTIBytes) }))},
		{name: "jti too long", proof: sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.JTI = strings.Repeat("j", oauth.MaxJTIBytes+1) })), reason: contract.ReasonInvalidDPoPProof, desc: "jti is too long"},
		{name: "proof at the size limit", proof: padTo(t, key, oauth.MaxProofBytes, false)},
		{name: "proof just over the size limit", proof: padTo(t, key, oauth.MaxProofBytes, true), reason: contract.ReasonInvalidDPoPProof, desc: "too large"},
		{name: "RSA key below 2048 bits", proof: forge(t, hdr("RS256", publicJWK(rsa1024)), claims(), jwt.SigningMethodRS256, rsa1024), jkt: rsa1024JKT, reason: contract.ReasonInvalidDPoPProof, desc: "shorter than 2048"},
		{name: "RSA key of the largest size goes on to the signature", proof: forge(t, hdr("RS256", hugeRSAJWK(t, oauth.MaxRSABits)), claims(), nil, nil) + "c2ln", reason: contract.ReasonInvalidDPoPProof, desc: "signature is invalid"},
		{name: "RSA key above the largest size", proof: forge(t, hdr("RS256", hugeRSAJWK(t, oauth.MaxRSABits+8)), claims(), nil, nil) + "c2ln", reason: contract.ReasonInvalidDPoPProof, desc: "longer than 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := verifier(t, Options{})
			r := Request{Proof: tt.proof, Method: "GET", URI: "https://api.example.com/orders", TokenHash: oauth.TokenHash(accessToken), JKT: jkt}
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
				got = err.(*denial.Denial).Reason
				if strings.Contains(err.Error(), tt.proof) || strings.Contains(err.Error(), accessToken) {
					t.Fatal("the error echoes the proof or the token")
				}
			}
			if got != tt.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tt.reason)
			}
			if tt.desc != "" && !strings.Contains(err.Error(), tt.desc) {
				t.Fatalf("refused as %v, want a description naming %q", err, tt.desc)
			}
		})
	}
}

func TestReplay(t *testing.T) {
	key := mustKey(t)
	jkt, _ := oauth.Thumbprint(key)
	clock := now
	v := verifier(t, Options{ReplayEntries: 2, ReplayEntriesPerKey: 2, Now: func() time.Time { return clock }})
	req := func(p string) Request {
		return Request{Proof: p, Method: "GET", URI: "https://api.example.com/orders", TokenHash: oauth.TokenHash(accessToken), JKT: jkt}
	}
	p := sign(t, key, "ES256", good())
	if err := v.Verify(req(p)); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(req(p)); err == nil || err.(*denial.Denial).Reason != contract.ReasonDPoPReplayed {
		t.Fatalf("replayed proof: %v", err)
	}
	// A fresh proof of another key fills the generation; a third is refused rather than
	// forgetting one.
	other := mustKey(t)
	otherJKT, _ := oauth.Thumbprint(other)
	if err := v.Verify(Request{Proof: sign(t, other, "ES256", good()), Method: "GET", URI: "https://api.example.com/orders", TokenHash: oauth.TokenHash(accessToken), JKT: otherJKT}); err != nil {
		t.Fatal(err)
	}
	err := v.Verify(req(sign(t, key, "ES256", good())))
	if e, ok := err.(*denial.Denial); !ok || e.Reason != contract.ReasonDPoPReplayCacheFull || e.Kind != denial.Unavailable {
		t.Fatalf("full cache: %v", err)
	}
	// Two windows later the first generation has rotated out; the replayed proof is still
	// refused by its iat, never by a forgotten jti.
	clock = clock.Add(2*oauth.DefaultIATWindow + time.Second)
	if err := v.Verify(req(p)); err == nil || err.(*denial.Denial).Reason != contract.ReasonInvalidDPoPProof {
		t.Fatalf("old proof after rotation: %v", err)
	}
	if err := v.Verify(req(sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.IssuedAt = clock })))); err != nil {
		t.Fatalf("fresh proof after rotation: %v", err)
	}
}

func with(edit func(*oauth.ProofClaims)) oauth.ProofClaims { c := good(); edit(&c); return c }

// padTo signs a good proof padded (with an extra claim) to the largest size up to n bytes, or
// (over) the smallest size above n. base64url moves in steps of one or two characters, so
// the size is within two bytes of n.
func padTo(t *testing.T, key *ecdsa.PrivateKey, n int, over bool) string {
	t.Helper()
	claims := func(pad string) jwt.MapClaims {
		return jwt.MapClaims{"jti": "padded", "htm": "GET", "htu": "https://api.example.com/orders", "iat": now.Unix(), "ath": oauth.TokenHash(accessToken), "pad": pad}
	}
	hdr := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": publicJWK(key)}
	base := len(forge(t, hdr, claims(""), jwt.SigningMethodES256, key))
	// Each 3 bytes of padding add 4 base64url characters; the ES256 signature has a fixed size.
	pad := strings.Repeat("p", (n-base)/4*3-3)
	p := forge(t, hdr, claims(pad), jwt.SigningMethodES256, key)
	for {
		next := forge(t, hdr, claims(pad+"p"), jwt.SigningMethodES256, key)
		if len(next) > n {
			if over {
				p = next
			}
			break
		}
		pad, p = pad+"p", next
	}
	if len(p) < n-2 || len(p) > n+2 || (len(p) > n) != over {
		t.Fatalf("padded proof is %d bytes, want about %d (over: %v)", len(p), n, over)
	}
	return p
}

// hugeRSAJWK is the public JWK of an RSA "key" of bits bits (a random odd modulus: nothing
// signs with it, the size check comes before the signature).
func hugeRSAJWK(t *testing.T, bits int) map[string]any {
	t.Helper()
	n := make([]byte, bits/8)
	if _, err := rand.Read(n); err != nil {
		t.Fatal(err)
	}
	n[0] |= 0x80
	n[len(n)-1] |= 1
	return map[string]any{"kty": "RSA", "n": b64.EncodeToString(n), "e": "AQAB"}
}

// TestReplayQuotaPerKey: the holder of one bound token floods the replay cache with proofs
// of its key; another key's proofs are still accepted (it can neither refuse nor evict them),
// and the flooding key is refused with 429 once it used its share.
func TestReplayQuotaPerKey(t *testing.T) {
	flooder, honest := mustKey(t), mustKey(t)
	fJKT, _ := oauth.Thumbprint(flooder)
	hJKT, _ := oauth.Thumbprint(honest)
	v := verifier(t, Options{ReplayEntries: 40}) // a twentieth each: 2 proofs per key and span
	req := func(key *ecdsa.PrivateKey, jkt string) Request {
		return Request{Proof: sign(t, key, "ES256", good()), Method: "GET", URI: "https://api.example.com/orders", TokenHash: oauth.TokenHash(accessToken), JKT: jkt}
	}
	first := req(honest, hJKT)
	if err := v.Verify(first); err != nil {
		t.Fatal(err)
	}
	var refused *denial.Denial
	for range 60 {
		if err := v.Verify(req(flooder, fJKT)); err != nil {
			refused = err.(*denial.Denial)
		}
	}
	if refused == nil || refused.Reason != contract.ReasonDPoPKeyQuota || refused.Kind != denial.TooManyRequests || refused.RetryAfter <= 0 {
		t.Fatalf("the flooding key was not stopped at its quota: %+v", refused)
	}
	if err := v.Verify(req(honest, hJKT)); err != nil {
		t.Fatalf("another key's proof after the flood: %v", err)
	}
	if err := v.Verify(first); err == nil || err.(*denial.Denial).Reason != contract.ReasonDPoPReplayed {
		t.Fatalf("the other key's first proof was forgotten (replayable): %v", err)
	}
}

// TestReplayAtTheWindowEdge: a proof is remembered for as long as it can be accepted. A proof
// whose iat is a window ahead is accepted at once, and may be accepted until a window after
// its iat; the replay cache must not have rotated it out by then, whatever the rotation's
// phase and however the clock's fractions of a second fall.
func TestReplayAtTheWindowEdge(t *testing.T) {
	key := mustKey(t)
	jkt, _ := oauth.Thumbprint(key)
	iat := now // whole seconds
	w := oauth.DefaultIATWindow
	run := func(t *testing.T, times []time.Duration, fillers []time.Duration) int {
		clock := iat
		v := verifier(t, Options{Now: func() time.Time { return clock }})
		p := sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.JTI = "edge" }))
		accepted := 0
		next := 0
		for _, at := range times {
			for ; next < len(fillers) && fillers[next] <= at; next++ { // other proofs rotate the cache
				clock = iat.Add(fillers[next])
				_ = v.Verify(Request{Proof: sign(t, key, "ES256", with(func(c *oauth.ProofClaims) { c.IssuedAt = clock })), Method: "GET",
					URI: "https://api.example.com/orders", TokenHash: oauth.TokenHash(accessToken), JKT: jkt})
			}
			clock = iat.Add(at)
			if v.Verify(Request{Proof: p, Method: "GET", URI: "https://api.example.com/orders", TokenHash: oauth.TokenHash(accessToken), JKT: jkt}) == nil {
				accepted++
			}
		}
		return accepted
	}
	// The reproduction: the cache rotates half a second after the proof's first use and again
	// two windows later; replayed at iat + window + 0.5s.
	if n := run(t, []time.Duration{-w, w + 500*time.Millisecond},
		[]time.Duration{-3*w + 500*time.Millisecond, -w + 500*time.Millisecond, w + 500*time.Millisecond}); n != 1 {
		t.Fatalf("the proof was accepted %d times", n)
	}
	// Every rotation phase (tenths of a second), replays every tenth of a second.
	var times []time.Duration // near both edges, and now and then between them
	for at := -w; at <= w+2*time.Second; at += 100 * time.Millisecond {
		if at < -w+2*time.Second || at > w-2*time.Second || at%(10*time.Second) == 0 {
			times = append(times, at)
		}
	}
	for phase := range 10 {
		start := -3*w + time.Duration(phase)*100*time.Millisecond
		var fillers []time.Duration
		for at := start; at <= w+2*time.Second; at += oauth.ReplaySpan(w) {
			fillers = append(fillers, at)
		}
		if n := run(t, times, fillers); n != 1 {
			t.Fatalf("phase %d: the proof was accepted %d times", phase, n)
		}
	}
}

func TestNonces(t *testing.T) {
	key := mustKey(t)
	jkt, _ := oauth.Thumbprint(key)
	secret := []byte("0123456789abcdef0123456789abcdef")
	clock := now
	v := verifier(t, Options{Nonces: NewNonces(secret, time.Minute), Now: func() time.Time { return clock }})
	// Another replica with the same key accepts what this one issued.
	replica := verifier(t, Options{Nonces: NewNonces(secret, time.Minute), Now: func() time.Time { return clock }})
	req := func(c oauth.ProofClaims) Request {
		return Request{Proof: sign(t, key, "ES256", c), Method: "GET", URI: "https://api.example.com/orders", TokenHash: oauth.TokenHash(accessToken), JKT: jkt}
	}
	err := v.Verify(req(good()))
	e, ok := err.(*denial.Denial)
	if !ok || e.Reason != contract.ReasonUseDPoPNonce || e.Nonce == "" {
		t.Fatalf("no nonce: %v", err)
	}
	if err := replica.Verify(req(with(func(c *oauth.ProofClaims) { c.Nonce = e.Nonce }))); err != nil {
		t.Fatalf("nonce from another replica: %v", err)
	}
	clock = clock.Add(30 * time.Second) // the next step (steps start at multiples of a minute): still good
	if err := v.Verify(req(with(func(c *oauth.ProofClaims) { c.Nonce = e.Nonce; c.IssuedAt = clock }))); err != nil {
		t.Fatalf("nonce of the previous step: %v", err)
	}
	clock = clock.Add(time.Minute) // two steps on: stale
	if err := v.Verify(req(with(func(c *oauth.ProofClaims) { c.Nonce = e.Nonce; c.IssuedAt = clock }))); err == nil || err.(*denial.Denial).Reason != contract.ReasonUseDPoPNonce {
		t.Fatalf("stale nonce: %v", err)
	}
	forged := NewNonces([]byte("another key, another key, another"), time.Minute).Current(clock)
	if err := v.Verify(req(with(func(c *oauth.ProofClaims) { c.Nonce = forged; c.IssuedAt = clock }))); err == nil || err.(*denial.Denial).Reason != contract.ReasonUseDPoPNonce {
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
	jkt, _ := oauth.Thumbprint(key)
	f.Add(sign(f, key, "ES256", good()))
	f.Add("a.b.c")
	f.Add(forge(f, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": map[string]any{"kty": "EC", "crv": "P-256", "x": 1}}, jwt.MapClaims{}, nil, nil))
	v := verifier(f, Options{})
	f.Fuzz(func(t *testing.T, proof string) {
		err := v.Verify(Request{Proof: proof, Method: "GET", URI: "https://api.example.com/orders", TokenHash: oauth.TokenHash(accessToken), JKT: jkt})
		if err != nil {
			if _, ok := err.(*denial.Denial); !ok {
				t.Fatalf("not a *denial.Denial: %v", err)
			}
		}
	})
}
