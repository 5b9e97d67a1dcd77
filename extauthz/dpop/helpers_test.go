package dpop

import (
	"crypto"
	"encoding/json"

	jose "github.com/go-jose/go-jose/v4"
)

func publicJWK(key crypto.Signer) map[string]any { return jwkMap(key.Public()) }
func privateJWK(key any) map[string]any          { return jwkMap(key) }

func jwkMap(k any) map[string]any {
	b, err := json.Marshal(jose.JSONWebKey{Key: k})
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	return m
}
