package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/scopegate/scopegate/controlplane/xdsserver"
	"github.com/scopegate/scopegate/internal/testing/envoysim"
)

const baseConfig = `
authz:
  address: "127.0.0.1:9191"
fleets:
  - name: edge
    listeners:
      - name: public
        address: "0.0.0.0"
        port: 10000
        virtual_hosts:
          - name: api
            domains: ["*"]
            routes:
              - name: orders-read
                match: {prefix: /orders, methods: [GET]}
                upstream: orders
                scopes: [SCOPE]
              - name: health
                match: {path: /healthz}
                upstream: orders
                public: true
EXTRA_LISTENER
  - name: internal
    listeners:
      - name: mesh
        address: "127.0.0.1"
        port: 9000
        virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
              - name: billing
                match: {prefix: /billing}
                upstream: orders
                scopes: [billing]
upstreams:
  - name: orders
    endpoints: ["ENDPOINT"]
EXTRA_UPSTREAM
`

var extraListener = `      - name: admin
        address: "0.0.0.0"
        port: 10001
        virtual_hosts:
          - name: admin
            domains: ["*"]
            routes:
              - name: admin
                match: {prefix: /admin}
                upstream: admin
                scopes: [admin]
`

const extraUpstream = `  - name: admin
    endpoints: ["10.0.0.9:8080"]
`

type cfgOpt struct {
	scope, endpoint string
	more            bool
}

func testConfig(o cfgOpt) string {
	if o.scope == "" {
		o.scope = "orders:read"
	}
	if o.endpoint == "" {
		o.endpoint = "127.0.0.1:8081"
	}
	l, u := "", ""
	if o.more {
		l, u = extraListener, extraUpstream
	}
	return cfgText(baseConfig, "SCOPE", o.scope, "ENDPOINT", o.endpoint, "EXTRA_LISTENER\n", l, "EXTRA_UPSTREAM\n", u)
}

var pushOrder = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.SecretType}

// TestADSDeliversInOrderAndTracksACKs: a SotW and a delta client of fleet "edge" receive every
// resource, in dependency order, ACK it, and /status shows each type sent and ACKed.
func TestADSDeliversInOrderAndTracksACKs(t *testing.T) {
	h := start(t, testConfig(cfgOpt{}))
	sotw := h.sotw("edge-1", "edge", envoysim.Options{KeepResources: true})
	delta := h.delta("edge-2", "edge", envoysim.Options{KeepResources: true})
	h.waitHolds(sotw, "edge")
	h.waitHolds(delta, "edge")

	for _, c := range []*envoysim.Client{sotw, delta} {
		if got := c.Names(resource.ListenerType); !slices.Equal(got, []string{"public"}) {
			t.Errorf("listeners = %v", got)
		}
		if got := c.Names(resource.ClusterType); !slices.Equal(got, []string{"orders", "scopegate_authz"}) {
			t.Errorf("clusters = %v", got)
		}
		rc, _ := c.Resource(resource.RouteType, "public").(*route.RouteConfiguration)
		if len(rc.GetVirtualHosts()) != 1 || len(rc.GetVirtualHosts()[0].GetRoutes()) != 2 {
			t.Errorf("route configuration = %v", rc)
		}
		assertOrdered(t, c.Log())
	}

	want := h.versions("edge")
	h.eventually("both nodes ACKed every type in /status", func() bool {
		st := h.status()
		for _, id := range []string{"edge-1", "edge-2"} {
			n := nodeStatus(st, id)
			if n == nil || n.Fleet != "edge" || n.ConnectedSince.IsZero() {
				return false
			}
			for _, typ := range pushOrder[:4] {
				ts := n.Types[xdsserver.TypeName(typ)]
				if ts.Sent != want[typ] || ts.Acked != want[typ] {
					return false
				}
			}
		}
		return true
	})
	st := h.status()
	if n := nodeStatus(st, "edge-1"); n.Protocol != "sotw" {
		t.Errorf("edge-1 protocol = %q", n.Protocol)
	}
	if n := nodeStatus(st, "edge-2"); n.Protocol != "delta" {
		t.Errorf("edge-2 protocol = %q", n.Protocol)
	}
	if got := h.metric("scopegate_xds_connected_nodes", map[string]string{"fleet": "edge"}); got != 2 {
		t.Errorf("connected nodes = %v, want 2", got)
	}
	if got := h.metric("scopegate_xds_pushes_total", map[string]string{"fleet": "edge", "type": "routes"}); got < 2 {
		t.Errorf("route pushes = %v, want >= 2", got)
	}
}

// assertOrdered: the first response of each type arrives in dependency order (clusters,
// endpoints, listeners, routes, secrets).
func assertOrdered(t *testing.T, log []envoysim.Received) {
	t.Helper()
	var firsts []int
	seen := map[string]bool{}
	for _, r := range log {
		if !seen[r.TypeURL] {
			seen[r.TypeURL] = true
			firsts = append(firsts, slices.Index(pushOrder, r.TypeURL))
		}
	}
	if !slices.IsSorted(firsts) {
		t.Errorf("types first arrived in order %v, want ascending (clusters, endpoints, listeners, routes, secrets)", firsts)
	}
}

// TestReloadPushesChangedTypesOnly: a file change reaches every node; a type whose content
// did not change is not sent again; a change touching every type arrives in order.
func TestReloadPushesChangedTypesOnly(t *testing.T) {
	h := start(t, testConfig(cfgOpt{}))
	sotw := h.sotw("edge-1", "edge", envoysim.Options{})
	delta := h.delta("edge-2", "edge", envoysim.Options{})
	other := h.sotw("internal-1", "internal", envoysim.Options{})
	for _, c := range []*envoysim.Client{sotw, delta} {
		h.waitHolds(c, "edge")
	}
	h.waitHolds(other, "internal")
	before := h.versions("edge")
	internalBefore := h.versions("internal")
	logLen := map[*envoysim.Client]int{sotw: len(sotw.Log()), delta: len(delta.Log()), other: len(other.Log())}

	// Only a route's scopes change: only routes move, and the other fleet is untouched.
	h.writeFile(testConfig(cfgOpt{scope: "orders:list"}))
	h.eventually("routes version to change", func() bool { return h.versions("edge")[resource.RouteType] != before[resource.RouteType] })
	after := h.versions("edge")
	for _, typ := range pushOrder[:3] {
		if after[typ] != before[typ] {
			t.Errorf("%s version changed on a route-only edit", typ)
		}
	}
	for _, c := range []*envoysim.Client{sotw, delta} {
		h.waitHolds(c, "edge")
		for _, r := range c.Log()[logLen[c]:] {
			if r.TypeURL != resource.RouteType {
				t.Errorf("%s was pushed again on a route-only edit", r.TypeURL)
			}
		}
	}
	if got := h.versions("internal"); got[resource.RouteType] != internalBefore[resource.RouteType] {
		t.Error("fleet internal changed")
	}
	if len(other.Log()) != logLen[other] {
		t.Errorf("fleet internal's node received %v", other.Log()[logLen[other]:])
	}

	// A new listener, route and upstream: every type changes, and arrives in order.
	logLen[sotw] = len(sotw.Log())
	h.writeFile(testConfig(cfgOpt{scope: "orders:list", more: true}))
	h.eventually("listeners version to change", func() bool { return h.versions("edge")[resource.ListenerType] != after[resource.ListenerType] })
	h.waitHolds(sotw, "edge")
	h.waitHolds(delta, "edge")
	var order []int
	for _, r := range sotw.Log()[logLen[sotw]:] {
		order = append(order, slices.Index(pushOrder, r.TypeURL))
	}
	if !slices.IsSorted(order) || len(order) < 4 {
		t.Errorf("push order %v, want clusters, endpoints, listeners, routes", order)
	}
	if got := sotw.Names(resource.ListenerType); !slices.Equal(got, []string{"admin", "public"}) {
		t.Errorf("listeners = %v", got)
	}
	if got := delta.Names(resource.EndpointType); !slices.Equal(got, []string{"admin", "orders", "scopegate_authz"}) {
		t.Errorf("delta endpoints = %v", got)
	}
	if got := h.metric("scopegate_xds_config_reloads_total", nil); got != 3 {
		t.Errorf("reloads = %v, want 3 (startup and two edits)", got)
	}
}

// TestNACK: a rejected response is logged, counted and shown in /status, is not sent again
// in a loop, and the next config change is still delivered.
func TestNACK(t *testing.T) {
	h := start(t, testConfig(cfgOpt{}))
	rejectScope := func(typeURL, _ string, msgs []proto.Message) string {
		if typeURL != resource.RouteType {
			return ""
		}
		for _, m := range msgs {
			if strings.Contains(m.(*route.RouteConfiguration).String(), "orders:bad") {
				return "route: unknown field in orders:bad"
			}
		}
		return ""
	}
	sotw := h.sotw("edge-1", "edge", envoysim.Options{NACK: rejectScope})
	delta := h.delta("edge-2", "edge", envoysim.Options{NACK: rejectScope})
	h.waitHolds(sotw, "edge")
	h.waitHolds(delta, "edge")
	good := h.versions("edge")

	h.writeFile(testConfig(cfgOpt{scope: "orders:bad"}))
	h.eventually("NACKs in /status", func() bool {
		st := h.status()
		for _, id := range []string{"edge-1", "edge-2"} {
			n := nodeStatus(st, id)
			if n == nil || n.LastNACK == nil {
				return false
			}
		}
		return true
	})
	bad := h.versions("edge")[resource.RouteType]
	st := h.status()
	for _, id := range []string{"edge-1", "edge-2"} {
		n := nodeStatus(st, id)
		if n.LastNACK.Type != "routes" || n.LastNACK.Version != bad || !strings.Contains(n.LastNACK.Message, "orders:bad") {
			t.Errorf("%s last NACK = %+v, want routes %s", id, n.LastNACK, bad)
		}
		if r := n.Types["routes"]; r.Sent != bad || r.Acked != good[resource.RouteType] {
			t.Errorf("%s routes sent %s acked %s; want sent %s acked %s", id, r.Sent, r.Acked, bad, good[resource.RouteType])
		}
	}
	if got := h.metric("scopegate_xds_nacks_total", map[string]string{"fleet": "edge", "type": "routes"}); got != 2 {
		t.Errorf("nacks metric = %v, want 2", got)
	}
	for _, c := range []*envoysim.Client{sotw, delta} {
		if c.Version(resource.RouteType) != good[resource.RouteType] {
			t.Error("client holds the rejected version")
		}
	}

	// The fix reaches both nodes, and the rejected version was sent exactly once each.
	h.writeFile(testConfig(cfgOpt{scope: "orders:fixed"}))
	h.eventually("fixed version", func() bool { return h.versions("edge")[resource.RouteType] != bad })
	for _, c := range []*envoysim.Client{sotw, delta} {
		h.waitHolds(c, "edge")
		nacked := 0
		for _, r := range c.Log() {
			if r.NACKed {
				nacked++
			}
		}
		if nacked != 1 {
			t.Errorf("rejected version received %d times, want once (no resend loop)", nacked)
		}
	}
}

// TestInvalidConfigChangesNothing: each bad edit is refused whole and counted; the last good
// config stays served and the nodes receive nothing.
func TestInvalidConfigChangesNothing(t *testing.T) {
	h := start(t, testConfig(cfgOpt{}))
	c := h.sotw("edge-1", "edge", envoysim.Options{})
	h.waitHolds(c, "edge")
	before := h.versions("edge")
	n := len(c.Log())

	bad := []struct{ name, cfg, wantErr string }{
		{"yaml syntax", "fleets: [", "yaml"},
		{"unknown upstream", strings.Replace(testConfig(cfgOpt{scope: "x"}), "upstream: orders\n                scopes: [billing]", "upstream: ghost\n                scopes: [billing]", 1),
			`fleet "internal": listener "mesh": virtual host "all": route "billing": upstream "ghost" is not defined`},
		{"endpoint without port", testConfig(cfgOpt{scope: "x", endpoint: "127.0.0.1"}), `endpoints[0]: "127.0.0.1" is not host:port`},
	}
	for i, tt := range bad {
		h.writeFile(tt.cfg)
		h.eventually("rejection "+tt.name, func() bool { return h.metric("scopegate_xds_config_rejections_total", nil) == float64(i+1) })
		st := h.status()
		if st.Config.LastReload.OK || !strings.Contains(st.Config.LastReload.Error, tt.wantErr) {
			t.Errorf("%s: last reload = %+v, want error containing %q", tt.name, st.Config.LastReload, tt.wantErr)
		}
	}
	if got := h.versions("edge"); !maps.Equal(got, before) {
		t.Errorf("versions changed: %v -> %v", before, got)
	}
	if len(c.Log()) != n {
		t.Errorf("node received %v after invalid edits", c.Log()[n:])
	}
	var ready map[string]any
	if code := h.getJSON("/readyz", &ready); code != 200 {
		t.Errorf("/readyz = %d after a rejected reload, want 200 (the last good config is served)", code)
	}
	if got := h.metric("scopegate_xds_config_valid", nil); got != 0 {
		t.Errorf("config_valid = %v, want 0", got)
	}
}

// TestUnknownFleet: a node whose cluster is no configured fleet gets nothing: its stream is
// refused with a reason, logged and counted. Once the fleet is configured it is served.
func TestUnknownFleet(t *testing.T) {
	h := start(t, testConfig(cfgOpt{}))
	c := h.sotw("stray-1", "nope", envoysim.Options{})
	d := h.delta("stray-2", "nope", envoysim.Options{})
	for _, cl := range []*envoysim.Client{c, d} {
		select {
		case <-cl.Done():
		case <-time.After(waitTimeout):
			t.Fatal("stream of an unknown fleet stayed open")
		}
		if s, _ := status.FromError(cl.Err()); s.Code() != codes.FailedPrecondition || !strings.Contains(s.Message(), `fleet "nope"`) {
			t.Errorf("stream ended with %v, want FailedPrecondition naming the fleet", cl.Err())
		}
		if len(cl.Log()) != 0 {
			t.Errorf("unknown fleet received %v", cl.Log())
		}
	}
	if got := h.metric("scopegate_xds_unknown_fleet_total", nil); got != 2 {
		t.Errorf("unknown fleet metric = %v, want 2", got)
	}
	if st := h.status(); len(st.Nodes) != 0 {
		t.Errorf("/status lists %v", st.Nodes)
	}

	// Configure the fleet: the node's next attempt (Envoy retries) is served.
	h.writeFile(strings.Replace(testConfig(cfgOpt{}), "name: internal", "name: nope", 1))
	h.eventually("fleet nope served", func() bool {
		for _, f := range h.svc.XDS().Fleets() {
			if f.Name == "nope" {
				return true
			}
		}
		return false
	})
	h.waitHolds(h.sotw("stray-1", "nope", envoysim.Options{}), "nope")
}

// TestReconnect: a node that disconnects and reconnects receives the current config, and
// /status forgets the closed stream.
func TestReconnect(t *testing.T) {
	h := start(t, testConfig(cfgOpt{}))
	c := h.sotw("edge-1", "edge", envoysim.Options{})
	h.waitHolds(c, "edge")
	c.Close()
	h.eventually("closed stream gone from /status", func() bool { return len(h.status().Nodes) == 0 })
	if got := h.metric("scopegate_xds_connected_nodes", map[string]string{"fleet": "edge"}); got != 0 {
		t.Errorf("connected = %v after disconnect", got)
	}

	before := h.versions("edge")
	h.writeFile(testConfig(cfgOpt{scope: "orders:v2"}))
	h.eventually("new version", func() bool { return h.versions("edge")[resource.RouteType] != before[resource.RouteType] })
	for i, reconnect := range []func(string, string, envoysim.Options) *envoysim.Client{h.sotw, h.delta, h.sotw} {
		t.Logf("reconnect %d", i)
		r := reconnect("edge-1", "edge", envoysim.Options{})
		h.waitHolds(r, "edge")
		r.Close()
	}
}

// TestReloadSignal: the reload channel (SIGHUP in the binary) reloads without a file event.
func TestReloadSignal(t *testing.T) {
	h := start(t, testConfig(cfgOpt{}), func(o *Options) { o.Debounce = time.Hour })
	c := h.sotw("edge-1", "edge", envoysim.Options{})
	h.waitHolds(c, "edge")
	before := h.versions("edge")
	h.writeFile(testConfig(cfgOpt{endpoint: "127.0.0.2:8081"}))
	h.reload <- struct{}{}
	h.eventually("endpoints version to change", func() bool {
		return h.versions("edge")[resource.EndpointType] != before[resource.EndpointType]
	})
	h.waitHolds(c, "edge")
}

// TestCertificateRotation: replacing the certificate files pushes a new secret, and only the
// secret: listeners are not drained.
func TestCertificateRotation(t *testing.T) {
	certDir := t.TempDir()
	certFile, keyFile := writeCert(t, certDir, "one.test")
	cfg := "insecure_plaintext_secrets: true\n" +
		strings.Replace(testConfig(cfgOpt{}), "port: 10000\n", "port: 10000\n        tls: {cert_file: "+certFile+", key_file: "+keyFile+"}\n", 1)
	h := start(t, cfg)
	types := []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.SecretType}
	c := h.sotw("edge-1", "edge", envoysim.Options{KeepResources: true})
	d := h.delta("edge-2", "edge", envoysim.Options{})
	h.waitHolds(c, "edge", types...)
	h.waitHolds(d, "edge", types...)
	if got := c.Names(resource.SecretType); !slices.Equal(got, []string{"public.tls"}) {
		t.Fatalf("secrets = %v", got)
	}
	before := h.versions("edge")
	n := len(c.Log())

	writeCert(t, certDir, "two.test")
	h.eventually("secret version to change", func() bool {
		return h.versions("edge")[resource.SecretType] != before[resource.SecretType]
	})
	h.waitHolds(c, "edge", types...)
	h.waitHolds(d, "edge", types...)
	for _, r := range c.Log()[n:] {
		if r.TypeURL != resource.SecretType {
			t.Errorf("%s pushed on certificate rotation", r.TypeURL)
		}
	}
}

// TestGracefulShutdown: stopping the service ends open ADS streams promptly.
func TestGracefulShutdown(t *testing.T) {
	h := start(t, testConfig(cfgOpt{}))
	c := h.sotw("edge-1", "edge", envoysim.Options{})
	d := h.delta("edge-2", "edge", envoysim.Options{})
	h.waitHolds(c, "edge")
	h.waitHolds(d, "edge")
	begin := time.Now()
	h.stop()
	if took := time.Since(begin); took > 4*time.Second {
		t.Errorf("shutdown took %s: GracefulStop waited on open streams", took)
	}
	for _, cl := range []*envoysim.Client{c, d} {
		select {
		case <-cl.Done():
		case <-time.After(waitTimeout):
			t.Fatal("stream still open after shutdown")
		}
	}
}

// TestNewRejectsInvalidConfig: the service does not start on a config it cannot serve.
func TestNewRejectsInvalidConfig(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	_, err := New(context.Background(), Options{ConfigPath: dir + "/missing.yaml", Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want not exist", err)
	}
	// The caller reports the error once; there is no last good config to speak of.
	if logs.Len() != 0 {
		t.Fatalf("logged at start: %s", logs.String())
	}
}

// TestConfigFolderSwaps: the folder holding xds.yaml is replaced git-sync style (ln -s v2
// link.tmp; mv -T link.tmp link), twice; each swap reaches the fleet (issue 20: the watch
// follows the path as the user names it).
func TestConfigFolderSwaps(t *testing.T) {
	root := t.TempDir()
	write := func(version, cfg string) {
		d := filepath.Join(root, version)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "xds.yaml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(version, filepath.Join(root, "link.tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(root, "link.tmp"), filepath.Join(root, "link")); err != nil {
			t.Fatal(err)
		}
	}
	write("v1", testConfig(cfgOpt{}))
	h := start(t, testConfig(cfgOpt{}), func(o *Options) { o.ConfigPath = filepath.Join(root, "link", "xds.yaml") })
	c := h.sotw("edge-1", "edge", envoysim.Options{})
	h.waitHolds(c, "edge")
	for i, scope := range []string{"orders:list", "orders:browse"} {
		before := h.versions("edge")[resource.RouteType]
		write(fmt.Sprintf("v%d", i+2), testConfig(cfgOpt{scope: scope}))
		h.eventually("routes version to change after swap "+scope, func() bool { return h.versions("edge")[resource.RouteType] != before })
	}
}
