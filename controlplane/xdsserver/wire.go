package xdsserver

import (
	"strconv"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// A discovery response is sent as bytes made once per version and shared by every stream:
// the codec below hands gRPC those bytes as they are (no marshalling, no copy), followed by
// the few bytes that differ per stream (the nonce, and for delta the removed names).
//
// Field numbers, from envoy/service/discovery/v3/discovery.proto.
const (
	// DiscoveryResponse
	sotwVersionInfo protowire.Number = 1
	sotwResources   protowire.Number = 2 // repeated google.protobuf.Any
	sotwTypeURL     protowire.Number = 4
	sotwNonce       protowire.Number = 5

	// DeltaDiscoveryResponse
	deltaSystemVersionInfo protowire.Number = 1
	deltaResources         protowire.Number = 2 // repeated Resource
	deltaTypeURL           protowire.Number = 4
	deltaNonce             protowire.Number = 5
	deltaRemovedResources  protowire.Number = 6 // repeated string

	// Resource
	resourceVersion protowire.Number = 1
	resourceBody    protowire.Number = 2 // google.protobuf.Any
	resourceName    protowire.Number = 3

	// google.protobuf.Any
	anyTypeURL protowire.Number = 1
	anyValue   protowire.Number = 2
)

// frame is a discovery response in its wire encoding. The buffers are read-only and most
// are shared with other streams: nothing may write to them.
type frame struct{ bufs mem.BufferSlice }

// codec is gRPC's proto codec, except that a frame is sent as the bytes it already is.
type codec struct{ encoding.CodecV2 }

func newCodec() codec { return codec{encoding.GetCodecV2(proto.Name)} }

// frameSent, when set (tests), sees every frame handed to gRPC.
var frameSent func(*frame)

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*frame); ok {
		if frameSent != nil {
			frameSent(f)
		}
		// SliceBuffers are not pooled: gRPC's Ref and Free on them are no-ops, so the shared
		// bytes outlive every send.
		return f.bufs, nil
	}
	return c.CodecV2.Marshal(v)
}

func shared(b []byte) mem.Buffer { return mem.SliceBuffer(b) }

// appendAny appends a field holding google.protobuf.Any{type_url, value}.
func appendAny(b []byte, field protowire.Number, typeURL string, value []byte) []byte {
	size := protowire.SizeTag(anyTypeURL) + protowire.SizeBytes(len(typeURL)) +
		protowire.SizeTag(anyValue) + protowire.SizeBytes(len(value))
	b = protowire.AppendTag(b, field, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	b = protowire.AppendTag(b, anyTypeURL, protowire.BytesType)
	b = protowire.AppendString(b, typeURL)
	b = protowire.AppendTag(b, anyValue, protowire.BytesType)
	return protowire.AppendBytes(b, value)
}

// appendResource appends a DeltaDiscoveryResponse resources entry: Resource{version,
// resource: Any, name}.
func appendResource(b []byte, typeURL, name, version string, value []byte) []byte {
	anySize := protowire.SizeTag(anyTypeURL) + protowire.SizeBytes(len(typeURL)) +
		protowire.SizeTag(anyValue) + protowire.SizeBytes(len(value))
	size := protowire.SizeTag(resourceVersion) + protowire.SizeBytes(len(version)) +
		protowire.SizeTag(resourceBody) + protowire.SizeBytes(anySize) +
		protowire.SizeTag(resourceName) + protowire.SizeBytes(len(name))
	b = protowire.AppendTag(b, deltaResources, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	b = protowire.AppendTag(b, resourceVersion, protowire.BytesType)
	b = protowire.AppendString(b, version)
	b = appendAny(b, resourceBody, typeURL, value)
	b = protowire.AppendTag(b, resourceName, protowire.BytesType)
	return protowire.AppendString(b, name)
}

func appendString(b []byte, field protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// nonceField is the per-stream tail of a response: its nonce.
func nonceField(field protowire.Number, nonce string) mem.Buffer {
	return shared(appendString(make([]byte, 0, 2+len(nonce)), field, nonce))
}

// nonceString formats a stream's response counter as the nonce.
func nonceString(n uint64) string { return strconv.FormatUint(n, 10) }
