package policy

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/checkreq"
)

func inputTestIdentity(t testing.TB) *token.Identity {
	t.Helper()
	id, err := token.IdentityFromClaims("demo", map[string]any{"iss": "https://idp", "sub": "alice", "client_id": "web",
		"aud": []any{"orders-api", "b"}, "scope": "orders:read orders:write", "exp": 4102444800.0, "iat": 1700000000.0, "jti": "j-1",
		"nested":   map[string]any{"z": 1.5, "a": []any{true, nil, "x\"y", false}, "big": 1e21, "neg": -3.0, "tiny": 1e-7, "int": 42, "e": map[string]any{}},
		"cnf_like": []any{}, "émoji🙂": "v"}, []string{"scope"}, []string{"client_id"})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// The decision log's input (AppendInputJSON) is, byte for byte, the input the policy is given
// (BuildInput with every field) written as JSON: a replay by `scopegate policy impact` sees
// what the policy saw. A field added to fields.go without its JSON here fails this test.
func TestInputJSONMatchesBuildInput(t *testing.T) {
	id := inputTestIdentity(t)
	reqs := map[string]*authv3.CheckRequest{
		"envoy-shaped": checkreq.Request{ID: "r1", Method: "POST", Path: "/orders/42/items?expand=items&b=2&a=1&b=1&flag&=empty&x=%zz",
			Host: "api.example.com", Protocol: "HTTP/2", Source: "10.0.0.7:41234",
			Headers: map[string]string{"authorization": "Bearer secret-token-value", "cookie": "s=secret-cookie-value", "user-agent": "curl/8",
				"x-team": "payments", "x-quote": `a "b" \c`, "x-ctl": "tab\there", "x-utf8": "é\xffx"},
			ContextExtensions: map[string]string{"route": "orders", "scopes": "orders:read  orders:write", "mode": "shadow", "binding": "required", "name": "not-the-name"}}.MustBuild(),
		"ipv6 peer": checkreq.Request{Path: "/v6", Source: "[2001:db8::1]:8443"}.MustBuild(),
		"workload principals": checkreq.Request{Path: "/w", Source: "10.0.0.9:1234",
			SourcePrincipal: "spiffe://cluster.local/ns/shop/sa/web", DestinationPrincipal: "spiffe://cluster.local/ns/shop/sa/orders"}.MustBuild(),
		"destination principal only": checkreq.Request{Path: "/w", DestinationPrincipal: "spiffe://td/\"q\""}.MustBuild(),
		"encoded path":               checkreq.Request{Path: "//admin/%2Fetc/a%20b/%zz/", Headers: map[string]string{}}.MustBuild(),
		"root, no query, no route":   checkreq.Request{Path: "/"}.MustBuild(),
		"plus and percent query":     checkreq.Request{Path: "/s?q=a+b&q=c%26d&q=&k%3D=v"}.MustBuild(),
		"empty query":                checkreq.Request{Path: "/s?"}.MustBuild(),
		"step-up route": checkreq.Request{Path: "/refunds", ContextExtensions: map[string]string{"route": "refund", "scopes": "orders:write",
			"acr_values": "urn:a  urn:b", "max_age": "300"}}.MustBuild(),
		"step-up route, unreadable max_age": checkreq.Request{Path: "/refunds", ContextExtensions: map[string]string{"route": "refund",
			"acr_values": "", "max_age": "5m"}}.MustBuild(),
		"unix peer": {Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/x.sock"}}}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/p",
				// Envoy with encode_raw_headers: the policy input reads the headers map only (today).
				HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "x-raw", Value: "1"}}}}}}},
	}
	// A token of a user's sign-in too (acr, amr, auth_time: RFC 9470).
	signIn, err := token.IdentityFromClaims("demo", map[string]any{"iss": "https://idp", "sub": "bob", "aud": "orders-api",
		"exp": 4102444800.0, "acr": "urn:a", "amr": []any{"pwd", "otp"}, "auth_time": 1700000000.0}, []string{"scope"}, []string{"client_id"})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(AppendTokenJSON(nil, signIn)); !strings.Contains(got, `"acr":"urn:a","amr":["pwd","otp"]`) || !strings.Contains(got, `"auth_time":1700000000`) {
		t.Fatalf("the sign-in token's document lacks its acr, amr or auth_time: %s", got)
	}
	for ti, tid := range []*token.Identity{id, signIn} {
		tok := AppendTokenJSON(nil, tid)
		for name, req := range reqs {
			t.Run(fmt.Sprintf("%s/token %d", name, ti), func(t *testing.T) {
				v := NewView(req)
				want := string(AppendValueJSON(nil, BuildInput(&v, AllFields(), TokenTerm(tid))))
				got := string(AppendInputJSON(nil, &v, tok, &HeaderFilter{}))
				if got != want {
					t.Fatalf("decision log input differs from the policy's:\n got %s\nwant %s", got, want)
				}
				if !json.Valid([]byte(got)) {
					t.Fatalf("not JSON: %s", got)
				}
			})
		}
	}
}

// The decision log's header filter: named headers (any case), credentials (any case), and any
// header that carries a hidden header's value are left out; the rest stay.
func TestInputJSONHidesHeaders(t *testing.T) {
	const proof = "eyJ0eXAiOiJkcG9wK2p3dCJ9.proof-payload.proof-signature"
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method: "GET", Path: "/", Headers: map[string]string{
			"DPoP": proof, "x-forwarded-dpop": "copy:" + proof, "Authorization": "DPoP token-value-123",
			"x-token-copy": "token-value-123 DPoP token-value-123", "x-api-key": "k-123456789", "x-keep": "kept", "short": "DPoP"}}}}}
	v := NewView(req)
	got := string(AppendInputJSON(nil, &v, []byte("{}"), &HeaderFilter{Names: []string{"dpop", "x-api-key"}}))
	for _, s := range []string{"proof-payload", "token-value", "k-123456789", `"x-forwarded-dpop"`, `"DPoP":`, `"Authorization"`, `"x-api-key"`} {
		if strings.Contains(got, s) {
			t.Errorf("%q logged: %s", s, got)
		}
	}
	if !strings.Contains(got, `"x-keep":"kept"`) || !strings.Contains(got, `"short":"DPoP"`) {
		t.Errorf("an innocent header was left out: %s", got)
	}
}

func BenchmarkAppendInputJSON(b *testing.B) {
	id := inputTestIdentity(b)
	req := checkreq.Request{ID: "7f8e5b2c", Method: "GET", Path: "/orders/42?expand=items", Host: "api.example.com",
		Protocol: "HTTP/2", Source: "10.0.0.7:41234",
		Headers: map[string]string{"authorization": "Bearer x-long-enough", "user-agent": "curl/8.5.0", "accept": "*/*",
			"x-forwarded-proto": "https", "x-request-id": "7f8e5b2c-1d3a-4e5f-9a8b-0c1d2e3f4a5b", "x-envoy-expected-rq-timeout-ms": "15000"},
		ContextExtensions: map[string]string{"route": "orders-read", "scopes": "orders:read"}}.MustBuild()
	v := NewView(req)
	tok := AppendTokenJSON(nil, id)
	f := &HeaderFilter{Names: []string{"dpop"}}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendInputJSON(buf[:0], &v, tok, f)
	}
	b.ReportMetric(float64(len(buf)), "bytes")
}

// BenchmarkAppendTokenJSON is the once-per-token part of a logged input (claims already
// decoded).
func BenchmarkAppendTokenJSON(b *testing.B) {
	id := inputTestIdentity(b)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendTokenJSON(buf[:0], id)
	}
}
