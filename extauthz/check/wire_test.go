package check

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
)

// A pre-encoded response is, on the wire, the message it was made from.
func TestPreEncodedIsTheSameMessage(t *testing.T) {
	for _, m := range []*authv3.CheckResponse{
		{Status: okStatus, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: "x-scopegate-subject", Value: "alice"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
				{Header: &corev3.HeaderValue{Key: "x-scopegate-scopes", Value: "orders:read ünïcode"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
			},
			HeadersToRemove: []string{"x-scopegate-client-id"},
		}}},
		{Status: okStatus, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}},
	} {
		pre := preEncoded(m)
		if pre.GetStatus() != nil || pre.GetOkResponse() != nil {
			t.Fatal("the pre-encoded form should hold its content as bytes only")
		}
		want, _ := proto.Marshal(m)
		got, err := proto.Marshal(pre)
		if err != nil || string(got) != string(want) {
			t.Fatalf("wire form differs: %x vs %x (%v)", got, want, err)
		}
		dec, err := Decoded(pre)
		if err != nil || !proto.Equal(dec, m) {
			t.Fatalf("decoded %v, want %v (%v)", dec, m, err)
		}
	}
}
