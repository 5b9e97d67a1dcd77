package policy

import (
	"bytes"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/contract"
)

func fieldsRequest() *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 5000}}}},
			Principal: "spiffe://cluster.local/ns/shop/sa/web"},
		Destination: &authv3.AttributeContext_Peer{Principal: "spiffe://cluster.local/ns/shop/sa/orders-api"},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/orders/42?v=1", Host: "api.example.com", Scheme: "https", Protocol: "HTTP/2",
			Headers: map[string]string{"x-a": "1", "authorization": "Bearer secret"},
		}},
		ContextExtensions: map[string]string{contract.ExtRoute: "orders", contract.ExtScopes: "orders:read"},
	}}
}

func fieldsClaims() map[string]any {
	return map[string]any{"iss": "https://idp", "sub": "alice", "client_id": "c", "aud": []any{"api"},
		"scope": "orders:read", "exp": 2000000000, "iat": 1000000000, "jti": "j1", "tenant": "t",
		"acr": "urn:pwd", "amr": []any{"pwd"}, "auth_time": 1000000000}
}

// Every input field a policy can read must be seen by the analysis and, when the revision
// can share decisions, be part of the shared key: two requests (or tokens) that differ only
// in that field must never share a decision. A field added to the tables without a
// mutation here fails this test.
func TestEveryFieldKeysSharedDecisions(t *testing.T) {
	reqEdits := map[string]func(h *authv3.AttributeContext_HttpRequest, a *authv3.AttributeContext){
		"method":         func(h *authv3.AttributeContext_HttpRequest, _ *authv3.AttributeContext) { h.Method = "POST" },
		"path":           func(h *authv3.AttributeContext_HttpRequest, _ *authv3.AttributeContext) { h.Path = "/orders/43?v=1" },
		"path_segments":  func(h *authv3.AttributeContext_HttpRequest, _ *authv3.AttributeContext) { h.Path = "/orders/43?v=1" },
		"query":          func(h *authv3.AttributeContext_HttpRequest, _ *authv3.AttributeContext) { h.Path = "/orders/42?v=2" },
		"host":           func(h *authv3.AttributeContext_HttpRequest, _ *authv3.AttributeContext) { h.Host = "evil.example.com" },
		"scheme":         func(h *authv3.AttributeContext_HttpRequest, _ *authv3.AttributeContext) { h.Scheme = "http" },
		"protocol":       func(h *authv3.AttributeContext_HttpRequest, _ *authv3.AttributeContext) { h.Protocol = "HTTP/1.1" },
		"headers":        func(h *authv3.AttributeContext_HttpRequest, _ *authv3.AttributeContext) { h.Headers["x-a"] = "2" },
		"source_address": func(_ *authv3.AttributeContext_HttpRequest, a *authv3.AttributeContext) { a.Source = nil },
		"source.principal": func(_ *authv3.AttributeContext_HttpRequest, a *authv3.AttributeContext) {
			a.Source.Principal = "spiffe://cluster.local/ns/shop/sa/other"
		},
		"source.address": func(_ *authv3.AttributeContext_HttpRequest, a *authv3.AttributeContext) {
			a.Source.Address.GetSocketAddress().Address = "10.0.0.2"
		},
		"destination.principal": func(_ *authv3.AttributeContext_HttpRequest, a *authv3.AttributeContext) {
			a.Destination.Principal = "spiffe://cluster.local/ns/shop/sa/other-api"
		},
	}
	for i := range requestFields {
		f := &requestFields[i]
		key := f.name
		if f.doc != "" {
			key = f.path()
		}
		t.Run(f.path(), func(t *testing.T) {
			edit, ok := reqEdits[key]
			if !ok {
				t.Fatalf("no edit for input.%s: add one, so the test can tell whether it is keyed", f.path())
			}
			ref := "input." + f.path()
			if f.byName {
				ref += `["x-a"]`
			}
			got := analyzeSource(t, "package p\nallow if "+ref+"\n")
			if !got.Request.has(i) {
				t.Fatalf("%s: the analysis does not see the field (reads %+v)", ref, got)
			}
			if !got.Shareable {
				t.Fatalf("%s: a named request field should leave decisions shareable", ref)
			}
			id := identity(t, "demo", fieldsClaims())
			a, b := fieldsRequest(), fieldsRequest()
			edit(b.Attributes.Request.Http, b.Attributes)
			va, vb := NewView(a), NewView(b)
			if bytes.Equal(AppendSharedKey(nil, &got, &va, id), AppendSharedKey(nil, &got, &vb, id)) {
				t.Errorf("%s: requests that differ in it share a key", ref)
			}
			if requestValue(&va, i).Equal(requestValue(&vb, i)) {
				t.Errorf("%s: the edit does not change the field's value", ref)
			}
		})
	}

	tokEdits := map[string]func(issuer *string, c map[string]any){
		"issuer":    func(issuer *string, _ map[string]any) { *issuer = "other" },
		"iss":       func(_ *string, c map[string]any) { c["iss"] = "https://other" },
		"sub":       func(_ *string, c map[string]any) { c["sub"] = "bob" },
		"client_id": func(_ *string, c map[string]any) { c["client_id"] = "d" },
		"aud":       func(_ *string, c map[string]any) { c["aud"] = []any{"api", "x"} },
		"scopes":    func(_ *string, c map[string]any) { c["scope"] = "orders:write" },
		"exp":       func(_ *string, c map[string]any) { c["exp"] = 2000000001 },
		"iat":       func(_ *string, c map[string]any) { c["iat"] = 1000000001 },
		"jti":       func(_ *string, c map[string]any) { c["jti"] = "j2" },
		"binding":   func(_ *string, c map[string]any) { c["cnf"] = map[string]any{"jkt": "thumbprint"} },
		"source":    func(_ *string, c map[string]any) { c[sourceMarker] = token.SourceIntrospection },
		"acr":       func(_ *string, c map[string]any) { c["acr"] = "urn:mfa" },
		"amr":       func(_ *string, c map[string]any) { c["amr"] = []any{"pwd", "otp"} },
		"auth_time": func(_ *string, c map[string]any) { c["auth_time"] = 1000000300 },
		"claims":    func(_ *string, c map[string]any) { c["tenant"] = "u" },
	}
	for i := range tokenFields {
		f := &tokenFields[i]
		t.Run("token."+f.name, func(t *testing.T) {
			edit, ok := tokEdits[f.name]
			if !ok {
				t.Fatalf("no edit for input.token.%s: add one, so the test can tell whether it is keyed", f.name)
			}
			got := analyzeSource(t, "package p\nallow if input.token."+f.name+"\n")
			if !got.Token.has(i) {
				t.Fatalf("input.token.%s: the analysis does not see the field (reads %+v)", f.name, got)
			}
			issuer, claims := "demo", fieldsClaims()
			edit(&issuer, claims)
			a, b := identity(t, "demo", fieldsClaims()), identity(t, issuer, claims)
			ta, tb := tokenFrom(a), tokenFrom(b)
			if f.value(&ta).Equal(f.value(&tb)) {
				t.Fatalf("input.token.%s: the edit does not change the field's value", f.name)
			}
			if f.key == nil {
				if got.Shareable {
					t.Errorf("input.token.%s has no key, but a revision reading it shares decisions", f.name)
				}
				return
			}
			v := NewView(fieldsRequest())
			if !got.Shareable {
				t.Fatalf("input.token.%s: a keyed token field should leave decisions shareable", f.name)
			}
			if bytes.Equal(AppendSharedKey(nil, &got, &v, a), AppendSharedKey(nil, &got, &v, b)) {
				t.Errorf("input.token.%s: tokens that differ in it share a key", f.name)
			}
		})
	}
}

// The policy never sees credentials, in the input or through the shared key.
func TestInputHidesCredentials(t *testing.T) {
	v := NewView(fieldsRequest())
	in := BuildInput(&v, AllFields(), ast.NullTerm())
	if h, err := in.Find(ast.MustParseRef("x.request.headers")[1:]); err != nil || h.(ast.Object).Get(ast.StringTerm("authorization")) != nil {
		t.Fatalf("headers %v (%v): authorization must not be there", h, err)
	}
	reads := Fields{Request: 1 << reqHeaders, HeaderNames: []string{"authorization"}, Shareable: true}
	a, b := fieldsRequest(), fieldsRequest()
	b.Attributes.Request.Http.Headers["authorization"] = "Bearer other"
	va, vb := NewView(a), NewView(b)
	if !bytes.Equal(AppendSharedKey(nil, &reads, &va, nil), AppendSharedKey(nil, &reads, &vb, nil)) {
		t.Fatal("the shared key reads the Authorization header")
	}
}

func analyzeSource(t *testing.T, src string) Fields {
	t.Helper()
	dir := t.TempDir()
	writePolicy(t, dir, src)
	b, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return analyzeNeeds(b)
}

func identity(t *testing.T, issuer string, claims map[string]any) *token.Identity {
	t.Helper()
	source, _ := claims[sourceMarker].(string)
	delete(claims, sourceMarker)
	id, err := token.IdentityFromClaims(issuer, claims, []string{"scope"}, []string{"client_id"})
	if err != nil {
		t.Fatal(err)
	}
	if source != "" {
		id.Source = source
	}
	return id
}

// sourceMarker in a test's claims sets the identity's source (how the token was checked),
// which no claim carries.
const sourceMarker = "\x00source"

func requestValue(v *View, i int) *ast.Term {
	if t := requestFields[i].value(*v); t != nil {
		return t
	}
	return ast.NullTerm()
}

// input.source and input.destination are built for a revision that reads one of their
// fields (the document whole reads them all), and left out otherwise.
func TestPeerDocuments(t *testing.T) {
	v := NewView(fieldsRequest())
	for _, tc := range []struct {
		src        string
		want, none []string
	}{
		{"package p\nallow if input.source.principal\n", []string{"source.principal"}, []string{"destination"}},
		{"package p\nallow if input.source\n", []string{"source.principal", "source.address"}, []string{"destination"}},
		{"package p\nallow if input.destination.principal\n", []string{"destination.principal"}, []string{"source"}},
		{"package p\nallow if input.request.method\n", nil, []string{"source", "destination"}},
	} {
		reads := analyzeSource(t, tc.src)
		in := BuildInput(&v, &reads, ast.NullTerm())
		for _, f := range tc.want {
			if !reads.Reads(f) {
				t.Errorf("%q: the analysis does not see %s", tc.src, f)
			}
			if _, err := in.Find(ast.MustParseRef("x." + f)[1:]); err != nil {
				t.Errorf("%q: input.%s missing: %v", tc.src, f, err)
			}
		}
		for _, doc := range tc.none {
			if _, err := in.Find(ast.MustParseRef("x." + doc)[1:]); err == nil {
				t.Errorf("%q: input.%s built for a revision that does not read it", tc.src, doc)
			}
		}
	}
	reads := analyzeSource(t, "package p\nallow if input.source.address == \"10.0.0.1\"\n")
	if got, _ := BuildInput(&v, &reads, ast.NullTerm()).Find(ast.MustParseRef("x.source.address")[1:]); got.String() != `"10.0.0.1"` {
		t.Errorf("input.source.address = %v, want the IP without the port", got)
	}
	if reads.Cacheable || !reads.Shareable {
		t.Errorf("a revision reading the source's address: cacheable %v (one token comes from many peers), shareable %v", reads.Cacheable, reads.Shareable)
	}
	if reads := analyzeSource(t, "package p\nallow if input.source.port\n"); !reads.Unknown {
		t.Error("input.source.port is not a field the engine sends")
	}
}
