package translate

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/controlplane/config"
)

// BenchmarkBuild: parse, validate and translate a 500-route config (one reload's CPU work
// before anything is pushed).
func BenchmarkBuild(b *testing.B) {
	var y strings.Builder
	y.WriteString("authz:\n  address: \"127.0.0.1:9191\"\nfleets:\n  - name: edge\n    listeners:\n")
	y.WriteString("      - name: public\n        address: \"0.0.0.0\"\n        port: 10000\n        virtual_hosts:\n")
	y.WriteString("          - name: api\n            domains: [\"*\"]\n            routes:\n")
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&y, "              - name: route-%03d\n                match: {prefix: /svc/%03d, methods: [GET, POST]}\n", i, i)
		fmt.Fprintf(&y, "                upstream: up-%d\n                scopes: [\"svc%03d:read\"]\n", i%10, i)
	}
	y.WriteString("upstreams:\n")
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&y, "  - name: up-%d\n    endpoints: [\"10.1.0.%d:8080\"]\n", i, i+1)
	}
	data := []byte(y.String())
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		cfg, err := config.Parse("bench.yaml", data)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Build(context.Background(), cfg, nil); err != nil {
			b.Fatal(err)
		}
	}
}
