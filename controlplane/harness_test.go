package controlplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scopegate/scopegate/controlplane/xdsserver"
	"github.com/scopegate/scopegate/internal/testing/envoysim"
)

// waitTimeout bounds every wait on observable state; generous for a loaded -race run.
const waitTimeout = 20 * time.Second

// harness runs a Service on loopback ports with its config in a temp directory.
type harness struct {
	t    *testing.T
	dir  string
	path string
	reg  *prometheus.Registry
	svc  *Service
	conn *grpc.ClientConn
	// reload is the SIGHUP stand-in.
	reload chan struct{}
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg string, tweak ...func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), reg: prometheus.NewRegistry(), reload: make(chan struct{})}
	h.path = filepath.Join(h.dir, "xds.yaml")
	h.writeFile(cfg)
	opts := Options{
		ConfigPath: h.path, Registry: h.reg, Listen: "127.0.0.1:0", Admin: "127.0.0.1:0",
		Debounce: 20 * time.Millisecond,
	}
	for _, f := range tweak {
		f(&opts)
	}
	ctx := context.Background()
	svc, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.svc = svc
	runCtx, cancel := context.WithCancel(ctx)
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- svc.Run(runCtx, h.reload, 5*time.Second) }()
	h.conn, err = grpc.NewClient(svc.XDSAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.conn.Close()
		h.stop()
	})
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		h.t.Error("Run did not return after cancel")
	}
}

// writeFile replaces the config the way an editor does: write a temp file, rename it over.
func (h *harness) writeFile(cfg string) {
	h.t.Helper()
	tmp := filepath.Join(h.dir, ".xds.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, h.path); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) node(id, fleet string) *core.Node {
	return &core.Node{Id: id, Cluster: fleet}
}

func (h *harness) sotw(id, fleet string, o envoysim.Options) *envoysim.Client {
	h.t.Helper()
	return h.envoy(envoysim.SotW, id, fleet, o)
}

func (h *harness) delta(id, fleet string, o envoysim.Options) *envoysim.Client {
	h.t.Helper()
	return h.envoy(envoysim.Delta, id, fleet, o)
}

// envoy connects a simulated Envoy with connect (envoysim.SotW or envoysim.Delta), closed
// when the test ends.
func (h *harness) envoy(connect func(context.Context, grpc.ClientConnInterface, *core.Node, envoysim.Options) (*envoysim.Client, error), id, fleet string, o envoysim.Options) *envoysim.Client {
	h.t.Helper()
	c, err := connect(context.Background(), h.conn, h.node(id, fleet), o)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(c.Close)
	return c
}

// versions is the fleet's current snapshot versions by type URL.
func (h *harness) versions(fleet string) map[string]string {
	for _, f := range h.svc.XDS().Fleets() {
		if f.Name == fleet {
			out := map[string]string{}
			for _, typ := range xdsserver.ResourceTypes() {
				out[typ] = f.Versions[xdsserver.TypeName(typ)]
			}
			return out
		}
	}
	h.t.Fatalf("fleet %q not served", fleet)
	return nil
}

// waitHolds waits until c holds the fleet's current version of every type in types.
func (h *harness) waitHolds(c *envoysim.Client, fleet string, types ...string) {
	h.t.Helper()
	if len(types) == 0 {
		types = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType}
	}
	want := h.versions(fleet)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	err := c.Wait(ctx, func(c *envoysim.Client) bool {
		for _, typ := range types {
			if c.Version(typ) != want[typ] {
				return false
			}
		}
		return true
	})
	if err != nil {
		h.t.Fatal(err)
	}
}

// eventually polls cond until it holds or the deadline passes.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// status fetches /status over HTTP.
func (h *harness) status() Status {
	h.t.Helper()
	var st Status
	h.getJSON("/status", &st)
	return st
}

func (h *harness) getJSON(path string, v any) int {
	h.t.Helper()
	resp, err := http.Get("http://" + h.svc.AdminAddr() + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode
}

// metric returns the value of the series name{labels} (0 when absent).
func (h *harness) metric(name string, labels map[string]string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

// nodeStatus finds a node in /status.
func nodeStatus(st Status, id string) *xdsserver.NodeStatus {
	for i := range st.Nodes {
		if st.Nodes[i].Node == id {
			return &st.Nodes[i]
		}
	}
	return nil
}

// writeCert writes a fresh self-signed certificate and key for cn into dir.
func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	// Write both, then rename both in, so the watcher never sees a mismatched pair for long.
	for _, f := range []struct {
		path string
		pem  *pem.Block
	}{{certFile, &pem.Block{Type: "CERTIFICATE", Bytes: der}}, {keyFile, &pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}}} {
		if err := os.WriteFile(f.path+".tmp", pem.EncodeToMemory(f.pem), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{keyFile, certFile} {
		if err := os.Rename(f+".tmp", f); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// cfgText builds a test config from a template: {{SCOPE}} and {{EXTRA_ROUTE}} substitutions.
func cfgText(base string, repl ...string) string {
	return strings.NewReplacer(repl...).Replace(base)
}
