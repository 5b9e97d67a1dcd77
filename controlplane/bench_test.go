package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scopegate/scopegate/internal/testing/envoysim"
)

// benchRoutes is the size of the benchmark's config.
const benchRoutes = 500

// envoyWindow is Envoy's default HTTP/2 initial stream and connection window (256 MiB).
const envoyWindow = 256 << 20

// benchConfig is one fleet, one listener, benchRoutes protected routes over 10 upstreams.
// generation goes into every route's scopes, so each generation changes the routes (only).
func benchConfig(generation int) string {
	var b strings.Builder
	b.WriteString("authz:\n  address: \"127.0.0.1:9191\"\nfleets:\n  - name: edge\n    listeners:\n")
	b.WriteString("      - name: public\n        address: \"0.0.0.0\"\n        port: 10000\n        virtual_hosts:\n")
	b.WriteString("          - name: api\n            domains: [\"*\"]\n            routes:\n")
	for i := 0; i < benchRoutes; i++ {
		fmt.Fprintf(&b, "              - name: route-%03d\n                match: {prefix: /svc/%03d, methods: [GET, POST]}\n", i, i)
		fmt.Fprintf(&b, "                upstream: up-%d\n                scopes: [\"svc%03d:read\", \"gen:%d\"]\n", i%10, i, generation)
	}
	b.WriteString("upstreams:\n")
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&b, "  - name: up-%d\n    endpoints: [\"10.1.0.%d:8080\", \"10.2.0.%d:8080\"]\n", i, i+1, i+1)
	}
	return b.String()
}

// BenchmarkFleetPush measures one config change reaching a fleet: rewrite the file, reload
// (load, validate, translate, validate every resource, snapshot), and wait until every one of
// N ADS streams holds the new route version. One op is one change; ns/op is the time from the
// change until the last stream has it. Streams are spread over connections of 50 streams.
//
// Reported: ms-to-all (= ns/op in ms), heap-idle-MB (the service with the config, before any
// stream), heap-MB (after GC with all streams connected and synced: the service and the
// in-process simulated Envoys together) and heap-KB/stream.
func BenchmarkFleetPush(b *testing.B) {
	for _, bc := range []struct {
		streams int
		delta   bool
	}{{100, false}, {1000, false}, {1000, true}} {
		name := fmt.Sprintf("streams=%d/sotw", bc.streams)
		if bc.delta {
			name = fmt.Sprintf("streams=%d/delta", bc.streams)
		}
		b.Run(name, func(b *testing.B) { benchFleetPush(b, bc.streams, bc.delta) })
	}
}

func benchFleetPush(b *testing.B, streams int, delta bool) {
	dir := b.TempDir()
	path := filepath.Join(dir, "xds.yaml")
	if err := os.WriteFile(path, []byte(benchConfig(0)), 0o600); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := New(ctx, Options{
		ConfigPath: path, Registry: prometheus.NewRegistry(), Listen: "127.0.0.1:0", Admin: "127.0.0.1:0",
		Debounce: time.Hour, // the benchmark reloads explicitly
	})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, nil, 10*time.Second) }()
	defer func() { cancel(); <-done }()
	idle := heapInUse()

	const perConn = 50
	var conns []*grpc.ClientConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	clients := make([]*envoysim.Client, 0, streams)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for i := 0; i < streams; i++ {
		if i%perConn == 0 {
			// Envoy's HTTP/2 windows are large by default (256 MiB per stream and connection):
			// give the simulated Envoys the same, or flow control dominates the measurement.
			conn, err := grpc.NewClient(svc.XDSAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithInitialWindowSize(envoyWindow), grpc.WithInitialConnWindowSize(envoyWindow))
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, conn)
		}
		node := &core.Node{Id: fmt.Sprintf("edge-%04d", i), Cluster: "edge"}
		dial := envoysim.SotW
		if delta {
			dial = envoysim.Delta
		}
		c, err := dial(ctx, conns[len(conns)-1], node, envoysim.Options{})
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, c)
	}
	waitAll := func(version string) {
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		for _, c := range clients {
			if err := c.Wait(wctx, func(c *envoysim.Client) bool { return c.Version(resource.RouteType) == version }); err != nil {
				b.Fatal(err)
			}
		}
	}
	routeVersion := func() string {
		return svc.XDS().Fleets()[0].Versions["routes"]
	}
	waitAll(routeVersion())
	synced := heapInUse()

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := os.WriteFile(path, []byte(benchConfig(i+1)), 0o600); err != nil {
			b.Fatal(err)
		}
		before := routeVersion()
		b.StartTimer()
		if err := svc.Reload(ctx); err != nil {
			b.Fatal(err)
		}
		v := routeVersion()
		if v == before {
			b.Fatal("config change did not change the routes version")
		}
		waitAll(v)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms-to-all")
	b.ReportMetric(float64(idle)/(1<<20), "heap-idle-MB")
	b.ReportMetric(float64(synced)/(1<<20), "heap-MB")
	b.ReportMetric(float64(synced-idle)/float64(streams)/1024, "heap-KB/stream")
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
