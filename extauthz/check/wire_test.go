package check

import (
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/scopegate/scopegate/extauthz/token"
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

// A token's OK response is built as a message for its first allowed request and kept
// pre-encoded from its second on; every request gets the same message on the wire.
func TestAllowResponseEncodedFromSecondUse(t *testing.T) {
	s := New(Options{Headers: Headers{Subject: "x-scopegate-subject", Scopes: "x-scopegate-scopes", ClientID: "x-scopegate-client-id"}})
	id := &token.Identity{Subject: "alice", ScopeString: "orders:read"}
	pt := &perToken{}
	first := pt.allowResponse(s, id)
	if first.GetOkResponse() == nil || len(first.ProtoReflect().GetUnknown()) != 0 {
		t.Fatalf("first use: want a plain message, got %v", first)
	}
	second := pt.allowResponse(s, id)
	if second.GetOkResponse() != nil || len(second.ProtoReflect().GetUnknown()) == 0 {
		t.Fatalf("second use: want the pre-encoded form, got %v", second)
	}
	if third := pt.allowResponse(s, id); third != second {
		t.Fatal("third use: want the kept response, got a new one")
	}
	dec, err := Decoded(second)
	if err != nil || !proto.Equal(dec, first) {
		t.Fatalf("pre-encoded %v, want %v (%v)", dec, first, err)
	}

	// Many first requests at once (run with -race): each gets the same response, one is kept.
	pt = &perToken{}
	var wg sync.WaitGroup
	got := make([]*authv3.CheckResponse, 16)
	for i := range got {
		wg.Go(func() { got[i] = pt.allowResponse(s, id) })
	}
	wg.Wait()
	kept := pt.allow.Load()
	for i, r := range got {
		if r.GetOkResponse() == nil && r != kept {
			t.Fatalf("request %d: a pre-encoded response that is not the kept one", i)
		}
		if d, err := Decoded(r); err != nil || !proto.Equal(d, first) {
			t.Fatalf("request %d: %v, want %v (%v)", i, d, first, err)
		}
	}
}
