// Package compose holds the docker compose demo and the test that keeps it consistent: no Docker
// engine runs in CI, so the compose file, and every address it wires, is checked by reading it.
package compose

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/scopegate/scopegate/demo/idp"
	authzconfig "github.com/scopegate/scopegate/extauthz/config"
)

const composeFile = "compose.yaml"

func loadProject(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{composeFile},
		cli.WithWorkingDirectory("."),
		cli.WithEnv(nil), // the result must not depend on the caller's environment
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	p, err := opts.LoadProject(t.Context())
	if err != nil {
		t.Fatalf("%s is not a valid compose file: %v", composeFile, err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("%s: no service %q", composeFile, name)
	}
	return s
}

// readYAML decodes a file into a generic document.
func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc
}

// dig walks maps and lists: dig(doc, "a", "b", 0, "c").
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// mountSource returns the host path bind-mounted at target in service s.
func mountSource(t *testing.T, s types.ServiceConfig, target string) string {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Target == target && v.Type == types.VolumeTypeBind {
			return v.Source
		}
	}
	t.Fatalf("service %s: nothing is bind-mounted at %s", s.Name, target)
	return ""
}

// flagValue returns the value after flag in a service's command.
func flagValue(t *testing.T, s types.ServiceConfig, flag string) string {
	t.Helper()
	i := slices.Index(s.Command, flag)
	if i < 0 || i+1 >= len(s.Command) {
		t.Fatalf("service %s: command %v has no %s", s.Name, s.Command, flag)
	}
	return s.Command[i+1]
}

// configFile is the host file a service reads with --config FILE (FILE is a mount target).
func configFile(t *testing.T, s types.ServiceConfig) string {
	return mountSource(t, s, flagValue(t, s, "--config"))
}

func port(t *testing.T, what, hostport string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%s %q: %v", what, hostport, err)
	}
	return p
}

func TestComposeFileIsValid(t *testing.T) {
	p := loadProject(t)
	want := []string{"api", "authz", "certs", "envoy", "idp", "xds"}
	if got := p.ServiceNames(); !slices.Equal(sorted(got), want) {
		t.Fatalf("services %v, want %v", got, want)
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// pinned reports whether an image reference names a specific version: a tag other than
// "latest", or a digest.
func pinned(ref string) error {
	if strings.Contains(ref, "@sha256:") {
		return nil
	}
	name := ref
	if i := strings.LastIndex(ref, "/"); i >= 0 {
		name = ref[i+1:]
	}
	_, tag, ok := strings.Cut(name, ":")
	switch {
	case !ok || tag == "":
		return fmt.Errorf("%q has no tag", ref)
	case tag == "latest":
		return fmt.Errorf("%q uses latest", ref)
	}
	return nil
}

func TestPinned(t *testing.T) {
	for _, tt := range []struct {
		ref string
		ok  bool
	}{
		{"envoyproxy/envoy:v1.40.0", true}, {"golang:1.26.8-bookworm", true}, {"localhost:5000/x:1", true},
		{"alpine@sha256:abc", true}, {"envoyproxy/envoy", false}, {"envoyproxy/envoy:latest", false}, {"localhost:5000/x", false},
	} {
		if err := pinned(tt.ref); (err == nil) != tt.ok {
			t.Errorf("pinned(%q) = %v, want ok=%v", tt.ref, err, tt.ok)
		}
	}
}

func TestImagesArePinned(t *testing.T) {
	p := loadProject(t)
	for name, s := range p.Services {
		if s.Image == "" {
			t.Errorf("service %s: no image name (a built image needs a tag too)", name)
			continue
		}
		if err := pinned(s.Image); err != nil {
			t.Errorf("service %s: image %v", name, err)
		}
		if s.Build != nil {
			checkDockerfile(t, filepath.Join(s.Build.Context, s.Build.Dockerfile))
		}
	}
	if envoy := service(t, p, "envoy").Image; !strings.HasPrefix(envoy, "envoyproxy/envoy:v1.40.") {
		t.Errorf("envoy image %q, want envoyproxy/envoy:v1.40.x (the API version go-control-plane is built for)", envoy)
	}
}

var argRef = regexp.MustCompile(`^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$`)

// checkDockerfile checks every FROM names a pinned image (ARG defaults resolved) or a stage.
func checkDockerfile(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	defer f.Close()
	args, stages := map[string]string{}, map[string]bool{}
	froms := 0
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "ARG":
			if k, v, ok := strings.Cut(fields[1], "="); ok {
				args[k] = v
			}
		case "FROM":
			froms++
			ref := fields[1]
			for _, fl := range fields[1:] {
				if !strings.HasPrefix(fl, "--") {
					ref = fl
					break
				}
			}
			if m := argRef.FindStringSubmatch(ref); m != nil {
				ref = args[m[1]]
			}
			if i := slices.IndexFunc(fields, func(s string) bool { return strings.EqualFold(s, "AS") }); i > 0 && i+1 < len(fields) {
				stages[fields[i+1]] = true
			}
			if stages[ref] && !strings.Contains(ref, ":") {
				continue
			}
			if err := pinned(ref); err != nil {
				t.Errorf("%s:%d: FROM %v", path, line, err)
			}
		}
	}
	if froms < 2 {
		t.Errorf("%s: %d FROM lines, want a multi-stage build", path, froms)
	}
}

func TestBindMountsExist(t *testing.T) {
	p := loadProject(t)
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				if v.Type == types.VolumeTypeVolume {
					if _, ok := p.Volumes[v.Source]; !ok {
						t.Errorf("service %s: volume %q is not declared", name, v.Source)
					}
				}
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("service %s: bind mount %s → %s: %v", name, v.Source, v.Target, err)
			}
			if !v.ReadOnly {
				t.Errorf("service %s: bind mount %s should be read-only", name, v.Target)
			}
		}
	}
}

// TestStartOrder: depends_on conditions bring the demo up in order, and every service waited
// for as healthy has a health check.
func TestStartOrder(t *testing.T) {
	p := loadProject(t)
	want := map[string]map[string]string{
		"envoy": {"xds": types.ServiceConditionHealthy, "authz": types.ServiceConditionHealthy, "api": types.ServiceConditionHealthy},
		"authz": {"idp": types.ServiceConditionHealthy},
		"xds":   {"certs": types.ServiceConditionCompletedSuccessfully},
	}
	for svc, deps := range want {
		s := service(t, p, svc)
		for dep, cond := range deps {
			if got := s.DependsOn[dep].Condition; got != cond {
				t.Errorf("%s depends_on %s: condition %q, want %q", svc, dep, got, cond)
			}
		}
	}
	for name, s := range p.Services {
		for dep, d := range s.DependsOn {
			if d.Condition == types.ServiceConditionHealthy && p.Services[dep].HealthCheck == nil {
				t.Errorf("%s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
			}
		}
	}
	if c := service(t, p, "certs"); c.Restart != "no" {
		t.Errorf("certs is one-shot: restart %q, want no", c.Restart)
	}
}

// healthURL returns the URL of a `scopegate healthcheck URL` health check.
func healthURL(t *testing.T, s types.ServiceConfig) *url.URL {
	t.Helper()
	if s.HealthCheck == nil {
		t.Fatalf("service %s: no healthcheck", s.Name)
	}
	test := s.HealthCheck.Test
	i := slices.Index(test, "healthcheck")
	if len(test) < 2 || test[0] != "CMD" || i < 0 || i+1 >= len(test) {
		t.Fatalf("service %s: healthcheck %v, want [CMD /usr/local/bin/scopegate healthcheck URL] (no shell in the image)", s.Name, test)
	}
	u, err := url.Parse(test[i+1])
	if err != nil {
		t.Fatalf("service %s: healthcheck URL: %v", s.Name, err)
	}
	return u
}

// TestAddressesAgree checks the wiring between the configs the services read.
func TestAddressesAgree(t *testing.T) {
	p := loadProject(t)
	idpSvc, authzSvc, xdsSvc := service(t, p, "idp"), service(t, p, "authz"), service(t, p, "xds")
	apiSvc, envoySvc := service(t, p, "api"), service(t, p, "envoy")

	idpCfg, err := idp.Load(configFile(t, idpSvc))
	if err != nil {
		t.Fatal(err)
	}
	authzPath := configFile(t, authzSvc)
	authzDoc := readYAML(t, authzPath)
	xdsPath := configFile(t, xdsSvc)
	xdsDoc := readYAML(t, xdsPath)
	idpPort := port(t, "idp listen", idpCfg.Listen)

	t.Run("idp", func(t *testing.T) {
		if hp := idpSvc.Ports; len(hp) != 1 || strconv.Itoa(int(hp[0].Target)) != idpPort || hp[0].Published != idpPort {
			t.Errorf("idp ports %+v: want %s published as %s (the issuer's port)", hp, idpPort, idpPort)
		}
		if u, _ := url.Parse(idpCfg.Issuer); u.Port() != idpPort || u.Hostname() != "localhost" {
			t.Errorf("idp issuer %q: want http://localhost:%s, the address the host reaches the published port on", idpCfg.Issuer, idpPort)
		}
		if h := healthURL(t, idpSvc); h.Port() != idpPort || h.Path != idp.PathHealth {
			t.Errorf("idp healthcheck %s: want port %s path %s", h, idpPort, idp.PathHealth)
		}
	})

	t.Run("authz config matches the idp", func(t *testing.T) {
		for _, tc := range []struct {
			file, jwksHost string
		}{
			{authzPath, "idp"},                // in the compose network: the idp service
			{"authz.local.yaml", "127.0.0.1"}, // local runs
		} {
			doc := filepath.Base(tc.file)
			d := readYAML(t, tc.file)
			iss := dig(d, "issuers", 0)
			if got := dig(iss, "issuer"); got != idpCfg.Issuer {
				t.Errorf("%s: issuer %v, want the idp's issuer %q", doc, got, idpCfg.Issuer)
			}
			if dig(iss, "discovery") != false {
				t.Errorf("%s: discovery must be false: the discovered endpoints name localhost, which is not the idp inside a container", doc)
			}
			ju, _ := dig(iss, "jwks_uri").(string)
			u, err := url.Parse(ju)
			if err != nil || u.Hostname() != tc.jwksHost || u.Port() != idpPort || u.Path != idp.PathKeys {
				t.Errorf("%s: jwks_uri %q, want http://%s:%s%s", doc, ju, tc.jwksHost, idpPort, idp.PathKeys)
			}
			if auds, _ := dig(iss, "audiences").([]any); !slices.Contains(auds, any(idpCfg.API.Audience)) {
				t.Errorf("%s: audiences %v do not include the idp's API audience %q", doc, auds, idpCfg.API.Audience)
			}
			if got := dig(iss, "require_typ"); got != idp.AccessTokenType {
				t.Errorf("%s: require_typ %v, want %q (the idp's access token typ)", doc, got, idp.AccessTokenType)
			}
			if algs, _ := dig(iss, "algorithms").([]any); !slices.Contains(algs, any(idpCfg.Keys.Algorithm)) {
				t.Errorf("%s: algorithms %v do not include the idp's %s", doc, algs, idpCfg.Keys.Algorithm)
			}
		}
		a, b := readYAML(t, authzPath), readYAML(t, "authz.local.yaml")
		for _, d := range []map[string]any{a, b} {
			delete(dig(d, "issuers", 0).(map[string]any), "jwks_uri")
			delete(dig(d, "policy").(map[string]any), "path")
			// The tls files' directory differs (/certs, dev-certs); their names must not.
			for _, k := range []string{"cert_file", "key_file", "client_ca_file"} {
				f, _ := dig(d, "tls", k).(string)
				dig(d, "tls").(map[string]any)[k] = filepath.Base(f)
			}
			delete(dig(d, "issuers", 0, "introspection").(map[string]any), "endpoint")
			delete(dig(d, "issuers", 0, "introspection").(map[string]any), "client_secret_file")
		}
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("authz.yaml and authz.local.yaml differ beyond jwks_uri, policy.path, the certificates' directory and the introspection endpoint and secret file")
		}
		for _, tc := range []struct{ file, host string }{{authzPath, "idp"}, {"authz.local.yaml", "127.0.0.1"}} {
			in := dig(readYAML(t, tc.file), "issuers", 0, "introspection")
			if u, err := url.Parse(fmt.Sprint(dig(in, "endpoint"))); err != nil || u.Hostname() != tc.host || u.Port() != idpPort || u.Path != idp.PathIntrospect {
				t.Errorf("%s: introspection endpoint %v, want http://%s:%s%s", tc.file, dig(in, "endpoint"), tc.host, idpPort, idp.PathIntrospect)
			}
			if dig(in, "client_id") != idpCfg.API.Audience {
				t.Errorf("%s: introspection client_id %v, want the API's audience %q (only it may introspect)", tc.file, dig(in, "client_id"), idpCfg.API.Audience)
			}
		}
		secret, err := os.ReadFile("introspection-secret")
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, c := range idpCfg.Clients {
			found = found || (c.ID == idpCfg.API.Audience && c.Secret == strings.TrimSpace(string(secret)))
		}
		if !found {
			t.Errorf("compose/introspection-secret is not the secret of the idp client %q", idpCfg.API.Audience)
		}
	})

	t.Run("authz config is valid for scopegate authz", func(t *testing.T) {
		// The policy directory is a mount: validate against the host directory mounted there.
		policyDir, _ := dig(authzDoc, "policy", "path").(string)
		d := readYAML(t, authzPath)
		dig(d, "policy").(map[string]any)["path"] = mountSource(t, authzSvc, policyDir)
		in := dig(d, "issuers", 0, "introspection").(map[string]any)
		in["client_secret_file"] = mountSource(t, authzSvc, in["client_secret_file"].(string))
		raw, err := yaml.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := authzconfig.Parse(raw); err != nil {
			t.Errorf("%s: %v", authzPath, err)
		}
		if h := healthURL(t, authzSvc); h.Port() != port(t, "authz admin", dig(authzDoc, "admin").(string)) {
			t.Errorf("authz healthcheck %s is not on the admin port %v", h, dig(authzDoc, "admin"))
		}
	})

	t.Run("xds config points at authz and api", func(t *testing.T) {
		addr, _ := dig(xdsDoc, "authz", "address").(string)
		host, authzPort, err := net.SplitHostPort(addr)
		if err != nil || host != "authz" || authzPort != port(t, "authz listen", dig(authzDoc, "listen").(string)) {
			t.Errorf("%s: authz.address %q, want the authz service at its listen port (authz:%s)", xdsPath, addr, port(t, "authz listen", dig(authzDoc, "listen").(string)))
		}
		apiPort := port(t, "api --listen", flagValue(t, apiSvc, "--listen"))
		ups, _ := dig(xdsDoc, "upstreams").([]any)
		found := false
		for _, u := range ups {
			eps, _ := dig(u, "endpoints").([]any)
			for _, ep := range eps {
				host, epPort, _ := net.SplitHostPort(fmt.Sprint(ep))
				if _, ok := p.Services[host]; !ok {
					t.Errorf("%s: upstream endpoint %v is not a compose service", xdsPath, ep)
				}
				if host == "api" {
					found = true
					if epPort != apiPort {
						t.Errorf("%s: upstream endpoint %v, want api:%s (demo-api --listen)", xdsPath, ep, apiPort)
					}
				}
			}
		}
		if !found {
			t.Errorf("%s: no upstream endpoint on the api service", xdsPath)
		}
		if h := healthURL(t, xdsSvc); h.Port() != port(t, "xds admin", fmt.Sprint(dig(xdsDoc, "admin"))) {
			t.Errorf("xds healthcheck %s is not on the admin port %v", h, dig(xdsDoc, "admin"))
		}
		if h := healthURL(t, apiSvc); h.Port() != apiPort {
			t.Errorf("api healthcheck %s is not on port %s", h, apiPort)
		}
	})

	t.Run("TLS: certs volume, xds cert paths, envoy port", func(t *testing.T) {
		certsDir := flagValue(t, service(t, p, "certs"), "--out")
		certVol := volumeAt(t, service(t, p, "certs"), certsDir)
		listener := dig(xdsDoc, "fleets", 0, "listeners", 0)
		for _, key := range []string{"cert_file", "key_file"} {
			f, _ := dig(listener, "tls", key).(string)
			if filepath.Dir(f) != certsDir {
				t.Errorf("%s: tls.%s %q is not in %s, where the certs service writes", xdsPath, key, f, certsDir)
			}
		}
		if v := volumeAt(t, xdsSvc, certsDir); v != certVol {
			t.Errorf("xds mounts volume %q at %s, certs writes to %q", v, certsDir, certVol)
		}
		lp := fmt.Sprint(dig(listener, "port"))
		if ports := envoySvc.Ports; len(ports) != 1 || strconv.Itoa(int(ports[0].Target)) != lp || ports[0].Published != "8443" {
			t.Errorf("envoy ports %+v: want the xds listener port %s published as 8443", ports, lp)
		}
	})

	// Every internal hop is mutual TLS with the files the certs service writes.
	t.Run("mTLS: authz, xds and envoy use the certs volume", func(t *testing.T) {
		certsDir := flagValue(t, service(t, p, "certs"), "--out")
		certVol := volumeAt(t, service(t, p, "certs"), certsDir)
		inCerts := func(doc string, v any, what string) {
			if f, _ := v.(string); filepath.Dir(f) != certsDir {
				t.Errorf("%s: %s %q is not in %s, where the certs service writes", doc, what, f, certsDir)
			}
		}
		for _, k := range []string{"cert_file", "key_file", "client_ca_file"} {
			inCerts(authzPath, dig(authzDoc, "tls", k), "tls."+k)
			inCerts(xdsPath, dig(xdsDoc, "tls", k), "tls."+k)
		}
		for _, k := range []string{"ca_file", "cert_file", "key_file"} {
			inCerts(xdsPath, dig(xdsDoc, "authz", "tls", k), "authz.tls."+k)
		}
		if got := dig(xdsDoc, "authz", "tls", "server_name"); got != "authz" {
			t.Errorf("%s: authz.tls.server_name %v, want authz (the DNS SAN of authz.crt)", xdsPath, got)
		}
		if got := dig(xdsDoc, "tls", "trust_domain"); got != "scopegate.demo" {
			t.Errorf("%s: tls.trust_domain %v, want scopegate.demo (demo-cert's default)", xdsPath, got)
		}
		for _, svc := range []types.ServiceConfig{authzSvc, xdsSvc, envoySvc} {
			if v := volumeAt(t, svc, certsDir); v != certVol {
				t.Errorf("%s mounts volume %q at %s, certs writes to %q", svc.Name, v, certsDir, certVol)
			}
		}
		b := readYAML(t, mountSource(t, envoySvc, flagValue(t, envoySvc, "-c")))
		tc := dig(b, "static_resources", "clusters", 0, "transport_socket", "typed_config", "common_tls_context")
		inCerts("envoy bootstrap", dig(tc, "validation_context", "trusted_ca", "filename"), "xds CA")
		inCerts("envoy bootstrap", dig(tc, "tls_certificates", 0, "certificate_chain", "filename"), "xds client certificate")
		if envoySvc.User != "65532:65532" {
			t.Errorf("envoy runs as %q: envoy.key (0600) belongs to 65532, the certs service's user", envoySvc.User)
		}
	})

	t.Run("envoy bootstrap points at xds", func(t *testing.T) {
		bootstrap := mountSource(t, envoySvc, flagValue(t, envoySvc, "-c"))
		if _, err := os.Stat(bootstrap); err != nil {
			t.Fatalf("envoy bootstrap: %v (generated by the xds/envoy work; the demo cannot start without it)", err)
		}
		want := net.JoinHostPort("xds", port(t, "xds listen", fmt.Sprint(dig(xdsDoc, "listen"))))
		for _, e := range bootstrapErrors(readYAML(t, bootstrap), want) {
			t.Errorf("%s: %s", bootstrap, e)
		}
	})
}

// bootstrapErrors checks that an Envoy bootstrap's ADS cluster reaches only xdsAddr and that its
// admin listener is container-local (127.0.0.1:9901, which the envoy healthcheck uses).
func bootstrapErrors(b map[string]any, xdsAddr string) []string {
	var errs []string
	cluster, _ := dig(b, "dynamic_resources", "ads_config", "grpc_services", 0, "envoy_grpc", "cluster_name").(string)
	if cluster == "" {
		return []string{"no dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name"}
	}
	clusters, _ := dig(b, "static_resources", "clusters").([]any)
	var addrs []string
	for _, c := range clusters {
		if dig(c, "name") != cluster {
			continue
		}
		eps, _ := dig(c, "load_assignment", "endpoints").([]any)
		for _, ep := range eps {
			lbs, _ := dig(ep, "lb_endpoints").([]any)
			for _, lb := range lbs {
				sa := dig(lb, "endpoint", "address", "socket_address")
				addrs = append(addrs, net.JoinHostPort(fmt.Sprint(dig(sa, "address")), fmt.Sprint(dig(sa, "port_value"))))
			}
		}
	}
	if len(addrs) == 0 || slices.IndexFunc(addrs, func(a string) bool { return a != xdsAddr }) >= 0 {
		errs = append(errs, fmt.Sprintf("ADS cluster %q endpoints %v, want only %s (the xds service)", cluster, addrs, xdsAddr))
	}
	admin := dig(b, "admin", "address", "socket_address")
	if dig(admin, "address") != "127.0.0.1" || fmt.Sprint(dig(admin, "port_value")) != "9901" {
		errs = append(errs, fmt.Sprintf("admin address %v, want 127.0.0.1:9901 (container-local; the envoy healthcheck uses it)", admin))
	}
	return errs
}

// TestBootstrapErrors tests the bootstrap check itself on small documents.
func TestBootstrapErrors(t *testing.T) {
	doc := func(xdsHost string, xdsPort int, adminHost string) map[string]any {
		var m map[string]any
		src := fmt.Sprintf(`
admin: {address: {socket_address: {address: %q, port_value: 9901}}}
dynamic_resources:
  ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds_cluster}}]}
static_resources:
  clusters:
    - name: xds_cluster
      load_assignment:
        cluster_name: xds_cluster
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %q, port_value: %d}}}}]}]
`, adminHost, xdsHost, xdsPort)
		if err := yaml.Unmarshal([]byte(src), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		name string
		doc  map[string]any
		want string
	}{
		{"ok", doc("xds", 18000, "127.0.0.1"), ""},
		{"wrong host", doc("127.0.0.1", 18000, "127.0.0.1"), "want only xds:18000"},
		{"wrong port", doc("xds", 18001, "127.0.0.1"), "want only xds:18000"},
		{"admin exposed", doc("xds", 18000, "0.0.0.0"), "admin address"},
		{"no ADS", map[string]any{}, "cluster_name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := strings.Join(bootstrapErrors(tt.doc, "xds:18000"), "; ")
			if (tt.want == "") != (errs == "") || !strings.Contains(errs, tt.want) {
				t.Fatalf("errors %q, want %q", errs, tt.want)
			}
		})
	}
}

// volumeAt returns the named volume a service mounts at target.
func volumeAt(t *testing.T, s types.ServiceConfig, target string) string {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Target == target && v.Type == types.VolumeTypeVolume {
			return v.Source
		}
	}
	t.Fatalf("service %s: no named volume at %s", s.Name, target)
	return ""
}
