package check_test

import (
	"context"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/scopegate/scopegate/internal/testissuer"
)

// With encode_raw_headers, Envoy sends header_map instead of headers: every Authorization
// value apart, possibly as raw bytes. One value is read like the headers map; two are a 400.
func TestAuthorizationFromHeaderMap(t *testing.T) {
	k := testissuer.NewKey("k1", "ES256")
	r := newRig(t, []*testissuer.Key{k}, "token-only", 100)
	tok := r.token(k, 1, "orders:read")
	raw := func(values ...*corev3.HeaderValue) *authv3.CheckRequest {
		req := request(tok)
		req.Attributes.Request.Http.Headers = nil
		req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: append([]*corev3.HeaderValue{
			{Key: ":path", RawValue: []byte("/orders/42")}, {Key: "user-agent", RawValue: []byte("curl/8")},
		}, values...)}
		return req
	}
	tests := []struct {
		name   string
		req    *authv3.CheckRequest
		status int32 // 0: allowed
	}{
		{"raw value", raw(&corev3.HeaderValue{Key: "authorization", RawValue: []byte("Bearer " + tok)}), 0},
		{"value", raw(&corev3.HeaderValue{Key: "authorization", Value: "Bearer " + tok}), 0},
		{"key in another case", raw(&corev3.HeaderValue{Key: "Authorization", RawValue: []byte("Bearer " + tok)}), 0},
		{"two values", raw(&corev3.HeaderValue{Key: "authorization", RawValue: []byte("Bearer " + tok)},
			&corev3.HeaderValue{Key: "authorization", RawValue: []byte("Bearer other")}), 400},
		{"none", raw(), 401},
	}
	for _, tt := range tests {
		resp, err := r.svc.Check(context.Background(), tt.req)
		if err != nil {
			t.Fatal(err)
		}
		got := resp.GetDeniedResponse().GetStatus().GetCode()
		if int32(got) != tt.status {
			t.Errorf("%s: status %d, want %d (%v)", tt.name, got, tt.status, resp)
		}
	}
}
