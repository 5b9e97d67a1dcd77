package checkreq

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
)

func TestBuild(t *testing.T) {
	r := Request{Method: "post", Path: "/orders?x=1", Host: "api.example.com", Protocol: "HTTP/2",
		ContextExtensions: map[string]string{"route": "orders-write"}, Source: "10.0.0.7:41234", ID: "1"}
	r.Add("Authorization", "Bearer t")
	r.Add("X-A", "1")
	r.Add("x-a", "2")
	got, err := r.Build()
	if err != nil {
		t.Fatal(err)
	}
	want := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.0.0.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 41234}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1", Method: "POST", Path: "/orders?x=1", Host: "api.example.com", Scheme: "https", Protocol: "HTTP/2",
			Headers: map[string]string{":method": "POST", ":path": "/orders?x=1", ":authority": "api.example.com", ":scheme": "https",
				"authorization": "Bearer t", "x-a": "1,2"},
		}},
		ContextExtensions: map[string]string{"route": "orders-write"},
	}}
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Fatalf("CheckRequest (-want +got):\n%s", d)
	}
	for _, bad := range []string{"10.0.0.7", "host:1", "10.0.0.7:99999"} {
		if _, err := (Request{Source: bad}).Build(); err == nil {
			t.Errorf("source %q accepted", bad)
		}
	}
}
