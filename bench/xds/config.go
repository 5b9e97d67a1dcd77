package xds

import (
	"context"
	"fmt"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/controlplane/translate"
)

// fleetName is the benchmark's one fleet.
const fleetName = "edge"

// benchConfig is one fleet with one listener and routes protected routes over 10
// upstreams. generation goes into the first route's scopes only: each generation changes
// one route, as an edit does.
func benchConfig(routes, generation int) string {
	var b strings.Builder
	b.WriteString("authz:\n  address: \"127.0.0.1:9191\"\nfleets:\n  - name: " + fleetName + "\n    listeners:\n")
	b.WriteString("      - name: public\n        address: \"0.0.0.0\"\n        port: 10000\n        virtual_hosts:\n")
	b.WriteString("          - name: api\n            domains: [\"*\"]\n            routes:\n")
	for i := range routes {
		scopes := fmt.Sprintf("[\"svc%05d:read\"]", i)
		if i == 0 {
			scopes = fmt.Sprintf("[\"svc%05d:read\", \"gen:%d\"]", i, generation)
		}
		fmt.Fprintf(&b, "              - name: route-%05d\n                match: {prefix: /svc/%05d, methods: [GET, POST]}\n", i, i)
		fmt.Fprintf(&b, "                upstream: up-%d\n                scopes: %s\n", i%10, scopes)
	}
	b.WriteString("upstreams:\n")
	for i := range 10 {
		fmt.Fprintf(&b, "  - name: up-%d\n    endpoints: [\"10.1.0.%d:8080\", \"10.2.0.%d:8080\"]\n", i, i+1, i+1)
	}
	return b.String()
}

// translated is what the control plane makes of benchConfig: its versions are content
// hashes, the same in every build that keeps the translation (the golden files pin it), so
// the harness knows which route version every stream must reach without asking the server.
type translated struct {
	routeVersion string
	// routeConfigBytes is the encoded size of the listener's RouteConfiguration.
	routeConfigBytes int
}

func translate1(routes, generation int) (translated, error) {
	cfg, err := config.Parse("bench.yaml", []byte(benchConfig(routes, generation)))
	if err != nil {
		return translated{}, err
	}
	fleets, err := translate.Build(context.Background(), cfg, nil)
	if err != nil {
		return translated{}, err
	}
	f := fleets[fleetName]
	out := translated{routeVersion: f.Versions[resource.RouteType]}
	for _, r := range f.Resources[resource.RouteType] {
		out.routeConfigBytes += proto.Size(r)
	}
	return out, nil
}
