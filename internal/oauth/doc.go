// Package oauth holds the OAuth 2.0 pieces the gate (extauthz), the demo IdP and the token
// CLI share, one file a concept: the asymmetric JWS algorithms (algorithms.go), thumbprints
// of keys, certificates and tokens (thumbprint.go), DPoP proofs (dpop_*.go: signing,
// checking, the replay cache and their defaults), OpenID discovery (discovery.go) and
// unverified JWT decoding for people reading a token (decode.go). What only the gate does
// with DPoP (server nonces, the shared replay store, refusals) stays in extauthz/dpop.
package oauth
