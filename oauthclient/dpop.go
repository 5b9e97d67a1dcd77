package oauthclient

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/scopegate/scopegate/internal/oauth"
)

// DPoPKey is the key a client binds its tokens to (RFC 9449): a P-256 key kept as a 0600
// PEM file next to the token cache, so the tokens in the cache stay usable across runs.
type DPoPKey struct {
	Signer crypto.Signer
	Alg    string
}

// DPoPKeyPath is where the key lives for a token cache at cachePath.
func DPoPKeyPath(cachePath string) string {
	return filepath.Join(filepath.Dir(cachePath), "dpop-key.pem")
}

// LoadOrCreateDPoPKey reads the key at path, or makes one and writes it (0600) when there is
// none.
func LoadOrCreateDPoPKey(path string) (*DPoPKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		block, _ := pem.Decode(b)
		if block == nil {
			return nil, fmt.Errorf("DPoP key %s: not PEM", path)
		}
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("DPoP key %s: %w", path, err)
		}
		return &DPoPKey{Signer: k, Alg: "ES256"}, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("DPoP key: %w", err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("DPoP key: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("DPoP key: %w", err)
	}
	return &DPoPKey{Signer: k, Alg: "ES256"}, nil
}

// Proof is a proof for one request: method and URL (query and fragment are ignored by the
// server), with the access token's hash when calling an API, and the server's nonce if it
// asked for one.
func (k *DPoPKey) Proof(method, url, accessToken, nonce string) (string, error) {
	return oauth.SignProof(k.Signer, k.Alg, oauth.ProofClaims{Method: method, URI: url, AccessToken: accessToken, Nonce: nonce})
}

// Thumbprint is the key's RFC 7638 thumbprint: the cnf.jkt of tokens bound to it.
func (k *DPoPKey) Thumbprint() (string, error) { return oauth.Thumbprint(k.Signer) }

// Client returns hc sending a DPoP proof with every POST (the token endpoint's requests), so
// the tokens it gets are bound to k; a server that answers use_dpop_nonce gets one retry with
// its nonce.
func (k *DPoPKey) Client(hc *http.Client) *http.Client {
	c := *hc
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = &dpopTransport{key: k, base: base}
	return &c
}

type dpopTransport struct {
	key  *DPoPKey
	base http.RoundTripper
}

func (t *dpopTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPost {
		return t.base.RoundTrip(r)
	}
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	send := func(nonce string) (*http.Response, error) {
		proof, err := t.key.Proof(r.Method, r.URL.String(), "", nonce)
		if err != nil {
			return nil, err
		}
		req := r.Clone(r.Context())
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.Header.Set("DPoP", proof)
		return t.base.RoundTrip(req)
	}
	resp, err := send("")
	if err != nil {
		return nil, err
	}
	if nonce := resp.Header.Get("DPoP-Nonce"); nonce != "" && resp.StatusCode == http.StatusBadRequest {
		_ = resp.Body.Close()
		return send(nonce)
	}
	return resp, nil
}
