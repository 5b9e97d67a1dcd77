package check

import (
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
)

// preEncoded returns a response whose wire form is exactly m's, held as encoded bytes.
//
// A verified token's OK response (its identity headers) is kept with the token in the cache
// from the token's second allowed request on (perToken.allowResponse). As protobuf messages it is about a kilobyte of small, pointer-linked
// objects per cached token, which the garbage collector walks on every cycle; encoded, it
// is one pointer-free slice, and gRPC copies it instead of marshalling a message tree on
// every request. protobuf writes unknown fields back verbatim, so Envoy decodes the very
// message m was. In-process its getters read empty: decode it (Decoded) to inspect it.
func preEncoded(m *authv3.CheckResponse) *authv3.CheckResponse {
	b, err := proto.Marshal(m)
	if err != nil {
		return m // cannot happen for a message we built; m is still the right answer
	}
	out := &authv3.CheckResponse{}
	out.ProtoReflect().SetUnknown(b)
	return out
}

// Decoded is resp as Envoy receives it: the wire form decoded, so a pre-encoded response
// reads like any other.
func Decoded(resp *authv3.CheckResponse) (*authv3.CheckResponse, error) {
	b, err := proto.Marshal(resp)
	if err != nil {
		return nil, err
	}
	out := &authv3.CheckResponse{}
	return out, proto.Unmarshal(b, out)
}
