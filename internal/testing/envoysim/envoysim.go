// Package envoysim is an in-process stand-in for Envoy's xDS client, for tests and
// benchmarks: it speaks ADS over real gRPC, state-of-the-world or delta, subscribes the way
// Envoy does (clusters and listeners by wildcard; endpoints, route configurations and secrets
// by the names the held clusters and listeners reference), ACKs or NACKs every response, and
// records what it holds.
package envoysim

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	// Linked in so the client can unpack every typed config it receives.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// NACKFunc decides whether to reject a response: a non-empty message NACKs it.
type NACKFunc func(typeURL, version string, resources []proto.Message) string

// Options tune a client.
type Options struct {
	// NACK rejects responses (nil: ACK everything).
	NACK NACKFunc
	// KeepResources keeps every resource received (see Resource). Off, only versions and
	// references are kept, and state-of-the-world routes and secrets are not even
	// unpacked (Names lists them as "#0", "#1", ...), as benchmarks with many clients want.
	KeepResources bool
}

// Received is one response as it arrived.
type Received struct {
	TypeURL string
	Version string
	Names   []string
	NACKed  bool
}

// held is one resource the client holds.
type held struct {
	msg  proto.Message // nil unless KeepResources
	refs []ref
}

type ref struct {
	typeURL, name string
}

// sendFunc sends one request: names for state-of-the-world, subscribe and unsubscribe for
// delta, and a non-empty nack to reject the last response.
type sendFunc func(typeURL string, names []string, subscribe, unsubscribe []string, nack string) error

// Client is one simulated Envoy.
type Client struct {
	node *core.Node
	opts Options

	cancel context.CancelFunc
	done   chan struct{}

	// Send-side state, touched only by the goroutine that sends (the starter, then the
	// receive loop).
	sendFn   sendFunc
	nodeSent bool

	mu           sync.Mutex
	changed      chan struct{} // closed and replaced on every change
	versions     map[string]string
	held         map[string]map[string]held
	subscribed   map[string][]string
	ldsRequested bool
	log          []Received
	err          error
}

func newClient(node *core.Node, opts Options, cancel context.CancelFunc) *Client {
	return &Client{
		node: node, opts: opts, cancel: cancel,
		done:       make(chan struct{}),
		changed:    make(chan struct{}),
		versions:   map[string]string{},
		held:       map[string]map[string]held{},
		subscribed: map[string][]string{},
	}
}

// SotW connects a state-of-the-world ADS client as node.
func SotW(ctx context.Context, conn grpc.ClientConnInterface, node *core.Node, opts Options) (*Client, error) {
	c, stream, err := connect(ctx, node, opts, discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources)
	if err != nil {
		return nil, err
	}
	acked, nonces := map[string]string{}, map[string]string{}
	send := func(typeURL string, names, _, _ []string, nack string) error {
		return stream.Send(&discovery.DiscoveryRequest{
			Node: c.nodeOnce(), TypeUrl: typeURL, VersionInfo: acked[typeURL], ResponseNonce: nonces[typeURL],
			ResourceNames: names, ErrorDetail: nackDetail(nack),
		})
	}
	recv := receive(stream.Recv, nonces, func(typeURL string, resp *discovery.DiscoveryResponse) error {
		add, msgs, err := c.decode(typeURL, resp.GetResources(), func(i int, m proto.Message) string {
			if m == nil {
				return fmt.Sprintf("#%d", i) // unnamed: not unpacked
			}
			return NameOf(m)
		})
		if err != nil {
			return err
		}
		nack := c.nackFor(typeURL, resp.GetVersionInfo(), msgs)
		if nack == "" {
			acked[typeURL] = resp.GetVersionInfo()
		}
		return c.apply(typeURL, resp.GetVersionInfo(), add, nil, true, nack)
	})
	return c.start(send, recv)
}

// Delta connects an incremental (delta) ADS client as node.
func Delta(ctx context.Context, conn grpc.ClientConnInterface, node *core.Node, opts Options) (*Client, error) {
	c, stream, err := connect(ctx, node, opts, discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources)
	if err != nil {
		return nil, err
	}
	nonces := map[string]string{}
	send := func(typeURL string, _, subscribe, unsubscribe []string, nack string) error {
		return stream.Send(&discovery.DeltaDiscoveryRequest{
			Node: c.nodeOnce(), TypeUrl: typeURL, ResponseNonce: nonces[typeURL],
			ResourceNamesSubscribe: subscribe, ResourceNamesUnsubscribe: unsubscribe, ErrorDetail: nackDetail(nack),
		})
	}
	recv := receive(stream.Recv, nonces, func(typeURL string, resp *discovery.DeltaDiscoveryResponse) error {
		resources := resp.GetResources()
		anys := make([]*anypb.Any, len(resources))
		for i, r := range resources {
			anys[i] = r.GetResource()
		}
		add, msgs, err := c.decode(typeURL, anys, func(i int, _ proto.Message) string { return resources[i].GetName() })
		if err != nil {
			return err
		}
		nack := c.nackFor(typeURL, resp.GetSystemVersionInfo(), msgs)
		return c.apply(typeURL, resp.GetSystemVersionInfo(), add, resp.GetRemovedResources(), false, nack)
	})
	return c.start(send, recv)
}

// connect opens an ADS stream (either protocol) under a context the client's Close cancels.
func connect[S any](ctx context.Context, node *core.Node, opts Options, open func(context.Context, ...grpc.CallOption) (S, error)) (*Client, S, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := open(ctx)
	if err != nil {
		cancel()
		var none S
		return nil, none, err
	}
	return newClient(node, opts, cancel), stream, nil
}

// response is what both protocols' responses share.
type response interface {
	GetTypeUrl() string
	GetNonce() string
}

// receive is one step of the receive loop: read a response, keep its nonce for the next
// request of its type, and handle it.
func receive[R response](recv func() (R, error), nonces map[string]string, handle func(typeURL string, resp R) error) func() error {
	return func() error {
		resp, err := recv()
		if err != nil {
			return err
		}
		typeURL := resp.GetTypeUrl()
		nonces[typeURL] = resp.GetNonce()
		return handle(typeURL, resp)
	}
}

// start is what both protocols share once their stream is open: send builds and sends one
// request, recv handles one response. It subscribes the roots and runs the receive loop.
func (c *Client) start(send sendFunc, recv func() error) (*Client, error) {
	c.sendFn = send
	if err := c.subscribeRoots(); err != nil {
		c.cancel()
		return nil, err
	}
	go c.loop(recv)
	return c, nil
}

// decode unpacks a response's resources when typeURL needs it (msgs is nil otherwise) and
// keys each by name(i, message), the message being nil when not unpacked.
func (c *Client) decode(typeURL string, anys []*anypb.Any, name func(i int, m proto.Message) string) (add map[string]proto.Message, msgs []proto.Message, err error) {
	if c.needsUnpack(typeURL) {
		if msgs, err = unpack(anys); err != nil {
			return nil, nil, err
		}
	}
	add = make(map[string]proto.Message, len(anys))
	for i := range anys {
		var m proto.Message
		if msgs != nil {
			m = msgs[i]
		}
		add[name(i, m)] = m
	}
	return add, msgs, nil
}

// nodeOnce returns the node for the stream's first request and nil after, as Envoy sends it.
func (c *Client) nodeOnce() *core.Node {
	if c.nodeSent {
		return nil
	}
	c.nodeSent = true
	return c.node
}

// nackDetail is a request's error_detail: nil for an ACK.
func nackDetail(nack string) *rpcstatus.Status {
	if nack == "" {
		return nil
	}
	return &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: nack}
}

// subscribeRoots subscribes to clusters by wildcard, as an ADS bootstrap does; listeners
// follow once the clusters are warm (see apply), as in Envoy's initialisation.
func (c *Client) subscribeRoots() error {
	return c.sendFn(resource.ClusterType, nil, nil, nil, "")
}

func (c *Client) loop(recv func() error) {
	defer close(c.done)
	for {
		if err := recv(); err != nil {
			c.mu.Lock()
			if c.err == nil {
				c.err = err
			}
			c.notifyLocked()
			c.mu.Unlock()
			return
		}
	}
}

// needsUnpack: clusters, endpoints and listeners are always unpacked (they say what to
// subscribe to and when clusters are warm);
// other types only when resources are kept or a NACK policy inspects them. A benchmark client
// thus spends little CPU of its own.
func (c *Client) needsUnpack(typeURL string) bool {
	return c.opts.KeepResources || c.opts.NACK != nil ||
		typeURL == resource.ClusterType || typeURL == resource.EndpointType || typeURL == resource.ListenerType
}

func (c *Client) nackFor(typeURL, version string, msgs []proto.Message) string {
	if c.opts.NACK == nil {
		return ""
	}
	return c.opts.NACK(typeURL, version, msgs)
}

// apply records a response, ACKs or NACKs it, then subscribes to whatever the held
// resources now reference (endpoints of EDS clusters, route configurations and secrets of
// listeners), like Envoy.
func (c *Client) apply(typeURL, version string, add map[string]proto.Message, removed []string, full bool, nack string) error {
	names := make([]string, 0, len(add))
	for n := range add {
		names = append(names, n)
	}
	sort.Strings(names)

	c.mu.Lock()
	c.log = append(c.log, Received{TypeURL: typeURL, Version: version, Names: names, NACKed: nack != ""})
	if nack == "" {
		c.versions[typeURL] = version
		cur := c.held[typeURL]
		if full || cur == nil {
			cur = map[string]held{}
		}
		for n, m := range add {
			h := held{refs: references(m)}
			if c.opts.KeepResources {
				h.msg = m
			}
			cur[n] = h
		}
		for _, n := range removed {
			delete(cur, n)
		}
		c.held[typeURL] = cur
	}
	want := map[string][]string{}
	for _, t := range []string{resource.EndpointType, resource.RouteType, resource.SecretType} {
		want[t] = []string{}
	}
	for _, t := range []string{resource.ClusterType, resource.ListenerType} {
		for _, h := range c.held[t] {
			for _, r := range h.refs {
				if !slices.Contains(want[r.typeURL], r.name) {
					want[r.typeURL] = append(want[r.typeURL], r.name)
				}
			}
		}
	}
	type change struct {
		typeURL           string
		names, sub, unsub []string
	}
	var changes []change
	for _, t := range []string{resource.EndpointType, resource.RouteType, resource.SecretType} {
		sort.Strings(want[t])
		old := c.subscribed[t]
		if slices.Equal(old, want[t]) || (old == nil && len(want[t]) == 0) {
			continue
		}
		changes = append(changes, change{t, want[t], minus(want[t], old), minus(old, want[t])})
		c.subscribed[t] = want[t]
	}
	// Envoy asks for listeners once its clusters are warm: every EDS cluster has endpoints.
	ldsNow := false
	if !c.ldsRequested && c.versions[resource.ClusterType] != "" {
		warm := true
		for _, n := range want[resource.EndpointType] {
			if _, ok := c.held[resource.EndpointType][n]; !ok {
				warm = false
			}
		}
		if warm {
			c.ldsRequested, ldsNow = true, true
		}
	}
	c.notifyLocked()
	ack := c.subscribed[typeURL]
	c.mu.Unlock()

	if err := c.sendFn(typeURL, ack, nil, nil, nack); err != nil {
		return err
	}
	for _, ch := range changes {
		if err := c.sendFn(ch.typeURL, ch.names, ch.sub, ch.unsub, ""); err != nil {
			return err
		}
	}
	if ldsNow {
		return c.sendFn(resource.ListenerType, nil, nil, nil, "")
	}
	return nil
}

// references lists what a cluster or listener makes Envoy subscribe to.
// secretRefs are the SDS secrets a TLS context names: certificates and validation contexts.
func secretRefs(c *tlsv3.CommonTlsContext) []ref {
	var out []ref
	for _, s := range c.GetTlsCertificateSdsSecretConfigs() {
		out = append(out, ref{resource.SecretType, s.GetName()})
	}
	for _, s := range []*tlsv3.SdsSecretConfig{c.GetValidationContextSdsSecretConfig(), c.GetCombinedValidationContext().GetValidationContextSdsSecretConfig()} {
		if s.GetName() != "" {
			out = append(out, ref{resource.SecretType, s.GetName()})
		}
	}
	return out
}

func references(m proto.Message) []ref {
	var out []ref
	switch r := m.(type) {
	case *cluster.Cluster:
		if r.GetType() == cluster.Cluster_EDS {
			name := r.GetEdsClusterConfig().GetServiceName()
			if name == "" {
				name = r.GetName()
			}
			out = append(out, ref{resource.EndpointType, name})
		}
		if ts := r.GetTransportSocket().GetTypedConfig(); ts != nil {
			tc := &tlsv3.UpstreamTlsContext{}
			if ts.UnmarshalTo(tc) == nil {
				out = append(out, secretRefs(tc.GetCommonTlsContext())...)
			}
		}
	case *listener.Listener:
		for _, fc := range r.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				m := &hcm.HttpConnectionManager{}
				if f.GetTypedConfig().UnmarshalTo(m) == nil && m.GetRds() != nil {
					out = append(out, ref{resource.RouteType, m.GetRds().GetRouteConfigName()})
				}
			}
			if ts := fc.GetTransportSocket().GetTypedConfig(); ts != nil {
				tc := &tlsv3.DownstreamTlsContext{}
				if ts.UnmarshalTo(tc) == nil {
					out = append(out, secretRefs(tc.GetCommonTlsContext())...)
				}
			}
		}
	}
	return out
}

func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Version is the version the client holds (accepted) for typeURL.
func (c *Client) Version(typeURL string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.versions[typeURL]
}

// Names lists the resources held of typeURL.
func (c *Client) Names(typeURL string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.held[typeURL]))
	for n := range c.held[typeURL] {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Resource returns a held resource (only with KeepResources).
func (c *Client) Resource(typeURL, name string) proto.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held[typeURL][name].msg
}

// Log is every response received, in order.
func (c *Client) Log() []Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.log)
}

// Err is why the stream ended (nil while it is open).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed when the stream has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Wait blocks until cond holds (checked on every change) or ctx ends.
func (c *Client) Wait(ctx context.Context, cond func(*Client) bool) error {
	for {
		c.mu.Lock()
		ch := c.changed
		c.mu.Unlock()
		if cond(c) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("node %s: %w (holds %v, stream error %v)", c.node.GetId(), ctx.Err(), c.versionsCopy(), c.Err())
		}
	}
}

func (c *Client) versionsCopy() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.versions))
	for k, v := range c.versions {
		out[k] = v
	}
	return out
}

// Close ends the stream and waits for the receive loop.
func (c *Client) Close() {
	c.cancel()
	<-c.done
}

func unpack(anys []*anypb.Any) ([]proto.Message, error) {
	out := make([]proto.Message, 0, len(anys))
	for _, a := range anys {
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("envoysim: %s: %w", a.GetTypeUrl(), err)
		}
		out = append(out, m)
	}
	return out, nil
}

// NameOf is a resource's name: Name, or ClusterName for endpoint sets.
func NameOf(m proto.Message) string {
	switch r := m.(type) {
	case interface{ GetName() string }:
		return r.GetName()
	case interface{ GetClusterName() string }:
		return r.GetClusterName()
	}
	return ""
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
