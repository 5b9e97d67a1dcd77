package oauth

import "slices"

// asymmetric is every JWS algorithm scopegate ever accepts: never "none", never HMAC.
var asymmetric = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Asymmetric reports whether alg is an asymmetric JWS algorithm scopegate may be told to
// accept (for tokens or DPoP proofs).
func Asymmetric(alg string) bool { return slices.Contains(asymmetric, alg) }

// AsymmetricAlgorithms lists them (a copy).
func AsymmetricAlgorithms() []string { return slices.Clone(asymmetric) }
