// Package checkreq builds envoy.service.auth.v3.CheckRequests shaped the way Envoy's ext_authz
// filter sends them: header names lower-cased, the pseudo-headers (:method, :path,
// :authority, :scheme) among the headers, :path with its query, repeated headers joined with
// ",", and the matched route's context_extensions. `scopegate check` sends these to authz, and
// the tests and the load benchmark use the same builder, so all of them agree with Envoy.
package checkreq

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// Request describes one downstream HTTP request as Envoy saw it.
type Request struct {
	Method   string // default GET
	Path     string // :path, query included; default /
	Host     string // :authority; default localhost
	Scheme   string // default https
	Protocol string // default HTTP/1.1
	// Headers are the request's headers (any case); a name given twice in Add joins as Envoy
	// joins repeats. Pseudo-headers are set from the fields above.
	Headers map[string]string
	// ContextExtensions are the matched route's ext_authz context_extensions.
	ContextExtensions map[string]string
	// Source is the downstream peer, "ip:port" (optional).
	Source string
	// SourcePrincipal and DestinationPrincipal are the peers' identities as Envoy takes them
	// from mutual TLS certificates (Istio: spiffe://cluster.local/ns/<ns>/sa/<account>).
	SourcePrincipal, DestinationPrincipal string
	// ID is the request id Envoy assigns (optional).
	ID string
}

// Add adds a header the way Envoy records it: the name lower-cased, a repeated header's
// values joined with ",".
func (r *Request) Add(name, value string) {
	if r.Headers == nil {
		r.Headers = map[string]string{}
	}
	name = strings.ToLower(name)
	if have, ok := r.Headers[name]; ok {
		value = have + "," + value
	}
	r.Headers[name] = value
}

// Build returns the CheckRequest. Only a malformed Source is an error.
func (r Request) Build() (*authv3.CheckRequest, error) {
	def := func(s, d string) string {
		if s == "" {
			return d
		}
		return s
	}
	method, path := strings.ToUpper(def(r.Method, "GET")), def(r.Path, "/")
	host, scheme, proto := def(r.Host, "localhost"), def(r.Scheme, "https"), def(r.Protocol, "HTTP/1.1")
	h := make(map[string]string, len(r.Headers)+4)
	for k, v := range r.Headers {
		h[strings.ToLower(k)] = v
	}
	h[":method"], h[":path"], h[":authority"], h[":scheme"] = method, path, host, scheme
	attrs := &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: r.ID, Method: method, Path: path, Host: host, Scheme: scheme, Protocol: proto, Headers: h,
		}},
		ContextExtensions: r.ContextExtensions,
	}
	if r.Source != "" {
		peer, err := peerOf(r.Source)
		if err != nil {
			return nil, err
		}
		attrs.Source = peer
	}
	if r.SourcePrincipal != "" {
		if attrs.Source == nil {
			attrs.Source = &authv3.AttributeContext_Peer{}
		}
		attrs.Source.Principal = r.SourcePrincipal
	}
	if r.DestinationPrincipal != "" {
		attrs.Destination = &authv3.AttributeContext_Peer{Principal: r.DestinationPrincipal}
	}
	return &authv3.CheckRequest{Attributes: attrs}, nil
}

// MustBuild is Build for fixed requests (tests, benchmarks): it panics on a bad Source.
func (r Request) MustBuild() *authv3.CheckRequest {
	req, err := r.Build()
	if err != nil {
		panic(err)
	}
	return req
}

func peerOf(addr string) (*authv3.AttributeContext_Peer, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("source address %q: want ip:port", addr)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || net.ParseIP(host) == nil {
		return nil, fmt.Errorf("source address %q: want ip:port", addr)
	}
	return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}}}}, nil
}
