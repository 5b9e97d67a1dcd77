// Package testissuer is a programmable token issuer for tests and benchmarks: it holds
// signing keys, serves them as a JWKS (and an OpenID configuration) over HTTP, and signs
// tokens. Its failure modes (down, junk, huge body) exercise the key cache. Not for production.
package testissuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Key is a signing key with its kid and algorithm.
type Key struct {
	KID     string
	Alg     string
	Private crypto.Signer
}

// NewKey generates a key for alg (RS256/PS256: RSA 2048; ES256: P-256; ES384: P-384; EdDSA: Ed25519).
func NewKey(kid, alg string) *Key {
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		panic("testissuer: unsupported alg " + alg)
	}
	if err != nil {
		panic(err)
	}
	return &Key{KID: kid, Alg: alg, Private: priv}
}

// Mode is how the JWKS endpoint behaves.
type Mode int32

const (
	Serving Mode = iota // the key set
	Down                // 503
	Junk                // 200 with a body that is not JSON
	Empty               // 200 with {"keys":[]}
	Huge                // 200 with a body far over any sane limit
	// BlackHole accepts TCP connections and never answers on them (a hung IdP or a
	// firewall that drops silently); connections open when it is set are closed first.
	BlackHole
)

// Issuer serves keys over HTTP.
type Issuer struct {
	Server *httptest.Server
	// Issuer is the iss value (the server's URL unless set otherwise).
	Issuer string

	mu       sync.Mutex
	keys     []*Key
	hold     *Hold
	mode     atomic.Int32
	requests atomic.Int64
	lis      *holeListener
}

// Hold keeps the next key-set request waiting: Arrived is closed when it comes in, and it
// is answered when Release is called.
type Hold struct {
	Arrived chan struct{}
	release chan struct{}
}

// Release lets the held request be answered.
func (h *Hold) Release() { close(h.release) }

// HoldNext makes the next /keys request wait until the returned Hold is released.
func (is *Issuer) HoldNext() *Hold {
	h := &Hold{Arrived: make(chan struct{}), release: make(chan struct{})}
	is.mu.Lock()
	is.hold = h
	is.mu.Unlock()
	return h
}

// New starts an issuer serving keys at /keys and discovery at /.well-known/openid-configuration.
func New(keys ...*Key) *Issuer {
	is := &Issuer{keys: keys}
	is.Server = httptest.NewUnstartedServer(http.HandlerFunc(is.serve))
	is.lis = &holeListener{Listener: is.Server.Listener, mode: &is.mode}
	is.Server.Listener = is.lis
	is.Server.Start()
	is.Issuer = is.Server.URL
	return is
}

// Close stops the server.
func (is *Issuer) Close() {
	is.lis.closeHeld()
	is.Server.Close()
}

// JWKSURL is the key-set URL.
func (is *Issuer) JWKSURL() string { return is.Server.URL + "/keys" }

// SetMode changes how the JWKS endpoint answers.
func (is *Issuer) SetMode(m Mode) {
	is.mode.Store(int32(m))
	if m == BlackHole {
		// Kept-alive connections would still be answered: only new ones fall into the hole.
		is.Server.CloseClientConnections()
	}
}

// holeListener hands connections to the HTTP server, or in BlackHole mode accepts and
// holds them unread.
type holeListener struct {
	net.Listener
	mode *atomic.Int32

	mu   sync.Mutex
	held []net.Conn
}

func (l *holeListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || Mode(l.mode.Load()) != BlackHole {
			return c, err
		}
		l.mu.Lock()
		l.held = append(l.held, c)
		l.mu.Unlock()
	}
}

func (l *holeListener) closeHeld() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.held {
		c.Close()
	}
	l.held = nil
}

// Requests counts JWKS requests served.
func (is *Issuer) Requests() int64 { return is.requests.Load() }

// SetKeys replaces the published keys (rotation).
func (is *Issuer) SetKeys(keys ...*Key) {
	is.mu.Lock()
	is.keys = keys
	is.mu.Unlock()
}

// JWKS returns the public key set as JSON.
func (is *Issuer) JWKS() []byte {
	is.mu.Lock()
	keys := append([]*Key(nil), is.keys...)
	is.mu.Unlock()
	return JWKS(keys...)
}

// JWKS marshals the public halves of keys as a JWK Set.
func JWKS(keys ...*Key) []byte {
	store := jwkset.NewMemoryStorage()
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.Private.Public(), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: k.KID, ALG: jwkset.ALG(k.Alg), USE: jwkset.UseSig},
		})
		if err != nil {
			panic(err)
		}
		if err := store.KeyWrite(context.Background(), jwk); err != nil {
			panic(err)
		}
	}
	raw, err := store.JSONPublic(context.Background())
	if err != nil {
		panic(err)
	}
	return raw
}

func (is *Issuer) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": is.Issuer, "jwks_uri": is.JWKSURL()})
	case "/keys":
		is.requests.Add(1)
		is.mu.Lock()
		h := is.hold
		is.hold = nil
		is.mu.Unlock()
		if h != nil {
			close(h.Arrived)
			select {
			case <-h.release:
			case <-r.Context().Done():
				return
			}
		}
		switch Mode(is.mode.Load()) {
		case Down:
			http.Error(w, "down", http.StatusServiceUnavailable)
		case Junk:
			_, _ = w.Write([]byte("<html>not a key set</html>"))
		case Empty:
			_, _ = w.Write([]byte(`{"keys":[]}`))
		case Huge:
			// Streamed without a Content-Length, so only reading can tell.
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"keys":[`))
			chunk := []byte(strings.Repeat(" ", 64<<10))
			for i := 0; i < 64; i++ { // 4 MiB
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			_, _ = w.Write([]byte(`]}`))
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(is.JWKS())
		}
	default:
		http.NotFound(w, r)
	}
}

// Claims are a token's claims; Sign adds nothing to them.
type Claims = jwt.MapClaims

// Standard returns typical access-token claims for this issuer.
func (is *Issuer) Standard(aud, sub, scope string, ttl time.Duration) Claims {
	now := time.Now()
	return Claims{
		"iss": is.Issuer, "aud": aud, "sub": sub, "client_id": "test-client", "scope": scope,
		"iat": now.Unix(), "exp": now.Add(ttl).Unix(), "jti": fmt.Sprintf("jti-%d", now.UnixNano()),
	}
}

// Sign signs claims with k; header entries in extra are added (typ, crit, ...).
func Sign(k *Key, claims Claims, extra map[string]any) string {
	t := jwt.NewWithClaims(jwt.GetSigningMethod(k.Alg), claims)
	t.Header["kid"] = k.KID
	t.Header["typ"] = "at+jwt"
	for name, v := range extra {
		if v == nil {
			delete(t.Header, name)
			continue
		}
		t.Header[name] = v
	}
	var key any = k.Private
	s, err := t.SignedString(key)
	if err != nil {
		panic(err)
	}
	return s
}
