package helm

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	healthcheck "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/scopegate/scopegate/controlplane/bootstrap"
	xdsconfig "github.com/scopegate/scopegate/controlplane/config"
	authzconfig "github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/internal/admin"
)

// TestChart renders the defaults and every ci/ values file and checks each rendering.
func TestChart(t *testing.T) {
	c := loadChart(t)
	for _, v := range variants(t) {
		t.Run(v.name, func(t *testing.T) {
			vals := valuesFile(t, v.file)
			m, err := render(c, releaseName, namespace, vals)
			if err != nil {
				t.Fatal(err)
			}
			r := decode(t, m, namespace)
			sidecar := strings.Contains(mustYAML(t, vals), "mode: sidecar")
			checkSecurity(t, r)
			checkSecretModes(t, r)
			checkServices(t, r)
			checkDisruptionAndScaling(t, r)
			w := checkWiring(t, r, sidecar)
			checkFleetIsolation(t, r, w)
			checkProbes(t, r, w)
			checkDrain(t, r, w)
			if v.loaders {
				checkConfigsLoad(t, r, w)
			} else {
				t.Logf("config files not loaded: %s", notLoadable[filepath.Base(v.file)])
			}
			checkNetworkPolicies(t, r, sidecar)
			checkCustomResources(t, r)
		})
	}
}

// wiring is what the components say about each other, read from the rendered objects.
type wiring struct {
	authzConfig, xdsConfig []byte
	authzPod               *corev1.PodSpec // the pod the authz container runs in
	authzMount             string          // where the policies ConfigMap is mounted
	bootstrap              *bootstrap.Options
}

func configFile(t *testing.T, r *rendering, name, key string) []byte {
	t.Helper()
	cm, ok := r.configMaps[name]
	if !ok {
		t.Fatalf("no ConfigMap %s", name)
	}
	data, ok := cm.Data[key]
	if !ok {
		t.Fatalf("ConfigMap %s has no %s", name, key)
	}
	return []byte(data)
}

// checkWiring: Envoy's bootstrap points at the xds Service, the xds config's authz address
// is the authz Service (or the sidecar on loopback), and the fleet exists.
func checkWiring(t *testing.T, r *rendering, sidecar bool) *wiring {
	t.Helper()
	w := &wiring{
		authzConfig: configFile(t, r, releaseName+"-scopegate-authz", "authz.yaml"),
		xdsConfig:   configFile(t, r, releaseName+"-scopegate-xds", "xds.yaml"),
	}
	var xc struct {
		Authz struct {
			Address string `json:"address"`
		} `json:"authz"`
		TLS *struct {
			ClientCAFile string `json:"client_ca_file"`
		} `json:"tls"`
		Fleets []struct {
			Name      string `json:"name"`
			Listeners []struct {
				Port int32 `json:"port"`
			} `json:"listeners"`
		} `json:"fleets"`
	}
	if err := yaml.Unmarshal(w.xdsConfig, &xc); err != nil {
		t.Fatal(err)
	}
	envoy := r.deployment("envoy")
	if sidecar {
		if r.deployment("authz") != nil || r.service(releaseName+"-scopegate-authz") != nil {
			t.Error("sidecar mode still renders the authz Deployment or Service")
		}
		if envoy == nil {
			t.Fatal("sidecar mode without Envoy pods")
		}
		w.authzPod = &envoy.Spec.Template.Spec
		authz := container(w.authzPod, "authz")
		if authz == nil {
			t.Fatal("no authz container in the Envoy pod")
		}
		// Envoy reaches the sidecar over a Unix socket in a volume both containers mount.
		sock, ok := strings.CutPrefix(xc.Authz.Address, "unix://")
		if !ok {
			t.Fatalf("xds authz.address = %q, want the sidecar's unix:// socket", xc.Authz.Address)
		}
		var ac struct {
			Listen string `json:"listen"`
		}
		if err := yaml.Unmarshal(w.authzConfig, &ac); err != nil || ac.Listen != xc.Authz.Address {
			t.Errorf("authz listen = %q (%v), want the socket Envoy dials %q", ac.Listen, err, xc.Authz.Address)
		}
		envoyC := container(w.authzPod, "envoy")
		for _, c := range []*corev1.Container{authz, envoyC} {
			if c == nil || !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == filepath.Dir(sock) }) {
				t.Errorf("the socket's directory %s is not mounted in container %v", filepath.Dir(sock), c)
			}
		}
		if authz.SecurityContext.RunAsUser == nil || envoyC.SecurityContext.RunAsUser == nil || *authz.SecurityContext.RunAsUser != *envoyC.SecurityContext.RunAsUser {
			t.Error("authz and Envoy run as different users: Envoy can't open the 0600 socket")
		}
	} else {
		d := r.deployment("authz")
		if d == nil {
			t.Fatal("no authz Deployment")
		}
		w.authzPod = &d.Spec.Template.Spec
		svc := r.service(releaseName + "-scopegate-authz")
		if svc == nil {
			t.Fatal("no authz Service")
		}
		if want := serviceAddress(t, svc, "grpc"); xc.Authz.Address != want {
			t.Errorf("xds authz.address = %q, want the authz Service's gRPC port %q", xc.Authz.Address, want)
		}
	}
	for _, v := range w.authzPod.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == releaseName+"-scopegate-authz-policies" {
			for _, m := range container(w.authzPod, "authz").VolumeMounts {
				if m.Name == v.Name {
					w.authzMount = m.MountPath
				}
			}
		}
	}

	if envoy == nil {
		return w
	}
	pod := &envoy.Spec.Template.Spec
	init := container(pod, "bootstrap")
	if init == nil || len(init.Args) == 0 || init.Args[0] != "bootstrap" {
		t.Fatal("the Envoy pod has no `scopegate bootstrap` init container")
	}
	o, out := bootstrapArgs(t, init.Args[1:])
	w.bootstrap = o
	if o.NodeID != "$(POD_NAME)" || !slices.ContainsFunc(init.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}) {
		t.Errorf("node id %q is not the pod name", o.NodeID)
	}
	xdsSvc := r.service(releaseName + "-scopegate-xds")
	if want := serviceAddress(t, xdsSvc, "grpc"); o.XDS != want {
		t.Errorf("bootstrap --xds %q, want the xds Service's gRPC port %q", o.XDS, want)
	}
	envoyC := container(pod, "envoy")
	if envoyC == nil {
		t.Fatal("no envoy container")
	}
	// With xds serving mutual TLS, Envoy's ADS connection must too, with the client
	// certificate mounted where the bootstrap reads it and the xds Service's name as SNI.
	if xc.TLS != nil && xc.TLS.ClientCAFile != "" {
		host, _, _ := strings.Cut(o.XDS, ":")
		if o.XDSCA == "" || o.XDSCert == "" || o.XDSKey == "" || o.XDSServerName != host {
			t.Errorf("xds requires client certificates, but the bootstrap's ADS TLS is %+v", o)
		}
		for _, f := range []string{o.XDSCA, o.XDSCert, o.XDSKey} {
			if !slices.ContainsFunc(envoyC.VolumeMounts, func(m corev1.VolumeMount) bool { return strings.HasPrefix(f, m.MountPath+"/") }) {
				t.Errorf("bootstrap file %s is not mounted in the envoy container", f)
			}
		}
	}
	// The ports the Envoy container (and so the edge Service) exposes are the fleet's listeners.
	listeners := map[int32]bool{}
	found := false
	for _, f := range xc.Fleets {
		if f.Name == o.Fleet {
			found = true
			for _, l := range f.Listeners {
				listeners[l.Port] = true
			}
		}
	}
	if !found {
		t.Errorf("Envoy's fleet %q is not in the xds config", o.Fleet)
	}
	for _, p := range envoyC.Ports {
		if p.Name != "ready" && !listeners[p.ContainerPort] {
			t.Errorf("Envoy port %s (%d) is no listener of fleet %q", p.Name, p.ContainerPort, o.Fleet)
		}
	}
	if ready, _ := containerPort(envoyC, "ready"); int(ready) != o.ReadyPort {
		t.Errorf("Envoy's ready port %d, the bootstrap's --ready-port %d", ready, o.ReadyPort)
	}
	if i := slices.Index(envoyC.Args, "--config-path"); i < 0 || envoyC.Args[i+1] != out {
		t.Errorf("envoy args %v do not read the bootstrap written to %s", envoyC.Args, out)
	}
	if mountOf(init, filepath.Dir(out)) == "" || mountOf(envoyC, filepath.Dir(out)) != mountOf(init, filepath.Dir(out)) {
		t.Errorf("the bootstrap directory %s is not one volume shared by init and envoy", filepath.Dir(out))
	}
	return w
}

func mountOf(c *corev1.Container, path string) string {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return m.Name
		}
	}
	return ""
}

// bootstrapArgs reads `scopegate bootstrap` flags into the Options the command would build.
func bootstrapArgs(t *testing.T, args []string) (*bootstrap.Options, string) {
	t.Helper()
	o, out := &bootstrap.Options{}, ""
	for i := 0; i < len(args); i++ {
		flag := args[i]
		if flag == "--delta" {
			o.Delta = true
			continue
		}
		if i+1 >= len(args) {
			t.Fatalf("bootstrap flag %s has no value", flag)
		}
		val := args[i+1]
		i++
		num := func() int {
			n, err := strconv.Atoi(val)
			if err != nil {
				t.Fatalf("bootstrap %s %q: %v", flag, val, err)
			}
			return n
		}
		switch flag {
		case "--node-id":
			o.NodeID = val
		case "--fleet":
			o.Fleet = val
		case "--xds":
			o.XDS = val
		case "--admin-port":
			o.AdminPort = num()
		case "--ready-port":
			o.ReadyPort = num()
		case "--out":
			out = val
		case "--xds-ca":
			o.XDSCA = val
		case "--xds-cert":
			o.XDSCert = val
		case "--xds-key":
			o.XDSKey = val
		case "--xds-server-name":
			o.XDSServerName = val
		default:
			t.Fatalf("unknown bootstrap flag %s", flag)
		}
	}
	return o, out
}

// serviceAddress is how a client in the cluster names the Service's port: name.namespace.svc:port.
func serviceAddress(t *testing.T, s *corev1.Service, port string) string {
	t.Helper()
	for _, p := range s.Spec.Ports {
		if p.Name == port {
			return fmt.Sprintf("%s.%s.svc:%d", s.Name, s.Namespace, p.Port)
		}
	}
	t.Fatalf("Service %s has no port %s", s.Name, port)
	return ""
}

// checkServices: every Service selects the pods of one Deployment and each of its ports
// names a container port those pods have.
func checkServices(t *testing.T, r *rendering) {
	t.Helper()
	for _, s := range r.services {
		sel := labels.SelectorFromSet(s.Spec.Selector)
		if len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s has no selector", s.Name)
			continue
		}
		var pods []*corev1.PodSpec
		for _, d := range r.deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				pods = append(pods, &d.Spec.Template.Spec)
			}
		}
		if len(pods) != 1 {
			t.Errorf("Service %s selects the pods of %d Deployments, want 1", s.Name, len(pods))
			continue
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.Type != intstr.String {
				t.Errorf("Service %s port %s: targetPort %s is not a container port name", s.Name, p.Name, p.TargetPort.String())
				continue
			}
			if !slices.ContainsFunc(pods[0].Containers, func(c corev1.Container) bool {
				_, ok := containerPort(&c, p.TargetPort.StrVal)
				return ok
			}) {
				t.Errorf("Service %s port %s: no container port named %q", s.Name, p.Name, p.TargetPort.StrVal)
			}
		}
	}
}

// checkProbes: every probe targets a port its container exposes; authz's and xds's hit paths
// their admin server serves; Envoy's hits the ready listener its bootstrap defines.
func checkProbes(t *testing.T, r *rendering, w *wiring) {
	t.Helper()
	served := adminPaths(t)
	for _, d := range r.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.ReadinessProbe == nil || c.LivenessProbe == nil {
				t.Errorf("%s/%s: readiness and liveness probes are required", d.Name, c.Name)
				continue
			}
			for kind, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
				var port intstr.IntOrString
				switch {
				case p.HTTPGet != nil:
					port = p.HTTPGet.Port
				case p.TCPSocket != nil:
					port = p.TCPSocket.Port
				default:
					t.Errorf("%s/%s %s: neither httpGet nor tcpSocket", d.Name, c.Name, kind)
					continue
				}
				num, ok := containerPort(&c, port.StrVal)
				if !ok {
					t.Errorf("%s/%s %s probe: port %s is not a container port", d.Name, c.Name, kind, port.String())
					continue
				}
				if p.HTTPGet == nil {
					continue
				}
				path := p.HTTPGet.Path
				switch c.Name {
				case "authz", "xds":
					if !served[path] {
						t.Errorf("%s/%s %s probe: the admin server does not serve %s", d.Name, c.Name, kind, path)
					}
					if want := map[string]string{"readiness": "/readyz", "liveness": "/healthz"}[kind]; path != want {
						t.Errorf("%s/%s %s probe: path %s, want %s", d.Name, c.Name, kind, path, want)
					}
					cfg := w.xdsConfig
					if c.Name == "authz" {
						cfg = w.authzConfig
					}
					if got := listenPort(t, cfg, "admin"); got != int(num) {
						t.Errorf("%s/%s: probe port %d, but the config's admin listens on %d", d.Name, c.Name, num, got)
					}
				case "envoy":
					checkEnvoyReady(t, w.bootstrap, int(num), path)
				default:
					t.Errorf("%s/%s: no check for this container's probe", d.Name, c.Name)
				}
			}
		}
	}
	// The gRPC container ports are the ports the configs listen on.
	if authz := container(w.authzPod, "authz"); authz != nil {
		port, _ := containerPort(authz, "grpc")
		if got := listenPort(t, w.authzConfig, "listen"); got != int(port) {
			t.Errorf("authz container port grpc %d, config listens on %d", port, got)
		}
	}
	if xds := r.deployment("xds"); xds != nil {
		port, _ := containerPort(container(&xds.Spec.Template.Spec, "xds"), "grpc")
		if got := listenPort(t, w.xdsConfig, "listen"); got != int(port) {
			t.Errorf("xds container port grpc %d, config listens on %d", port, got)
		}
	}
}

func listenPort(t *testing.T, cfg []byte, key string) int {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(cfg, &m); err != nil {
		t.Fatal(err)
	}
	addr, _ := m[key].(string)
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("config %s %q: %v", key, addr, err)
	}
	n, _ := strconv.Atoi(port)
	return n
}

// adminPaths asks scopegate's real admin server which probe paths it serves (not 404).
func adminPaths(t *testing.T) map[string]bool {
	t.Helper()
	srv, err := admin.New("127.0.0.1:0", prometheus.NewRegistry(), func() (any, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(slog.New(slog.DiscardHandler))
	defer srv.Shutdown(context.Background())
	out := map[string]bool{}
	for _, p := range []string{"/readyz", "/healthz", "/ready", "/status"} {
		resp, err := http.Get("http://" + srv.Addr() + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		out[p] = resp.StatusCode != http.StatusNotFound
	}
	if !out["/readyz"] || out["/ready"] {
		t.Fatalf("admin path probe is broken: %v", out)
	}
	return out
}

// checkEnvoyReady renders the bootstrap the init container would write and checks its ready
// listener is on the probed port and answers the probed path.
func checkEnvoyReady(t *testing.T, o *bootstrap.Options, port int, path string) {
	t.Helper()
	if o == nil {
		t.Fatal("an Envoy probe without a bootstrap")
	}
	data, err := bootstrap.Render(*o)
	if err != nil {
		t.Fatalf("scopegate bootstrap with the init container's flags: %v", err)
	}
	b, err := bootstrap.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range b.GetStaticResources().GetListeners() {
		if l.GetAddress().GetSocketAddress().GetPortValue() != uint32(port) {
			continue
		}
		m := &hcm.HttpConnectionManager{}
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
		hc := &healthcheck.HealthCheck{}
		if err := m.GetHttpFilters()[0].GetTypedConfig().UnmarshalTo(hc); err != nil {
			t.Fatal(err)
		}
		if got := hc.GetHeaders()[0].GetStringMatch().GetExact(); got != path || hc.GetPassThroughMode().GetValue() {
			t.Errorf("ready listener answers %q (pass-through %v), the probe asks %q", got, hc.GetPassThroughMode().GetValue(), path)
		}
		if l.GetAddress().GetSocketAddress().GetAddress() != "0.0.0.0" {
			t.Error("the ready listener is not reachable by the kubelet")
		}
		return
	}
	t.Errorf("no bootstrap listener on the probed port %d", port)
}

// checkConfigsLoad: the config files in the ConfigMaps load with scopegate's own loaders, and
// the policies ConfigMap, laid out as the kubelet mounts it, loads and passes its tests.
func checkConfigsLoad(t *testing.T, r *rendering, w *wiring) {
	t.Helper()
	if _, err := xdsconfig.Parse("xds.yaml", w.xdsConfig); err != nil {
		t.Errorf("xds config does not load: %v\n%s", err, w.xdsConfig)
	}
	var declared struct {
		Policy struct {
			Path  string `json:"path"`
			Watch bool   `json:"watch"`
		} `json:"policy"`
	}
	if err := yaml.Unmarshal(w.authzConfig, &declared); err != nil {
		t.Fatal(err)
	}
	authzConfig := w.authzConfig
	cm, ok := r.configMaps[releaseName+"-scopegate-authz-policies"]
	if ok {
		if declared.Policy.Path == "" || declared.Policy.Path != w.authzMount || !declared.Policy.Watch {
			t.Errorf("policy.path %q (watch %v), the policies are mounted at %q", declared.Policy.Path, declared.Policy.Watch, w.authzMount)
		}
		var items []corev1.KeyToPath
		for _, v := range w.authzPod.Volumes {
			if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
				items = v.ConfigMap.Items
			}
		}
		if len(items) != len(cm.Data) {
			t.Fatalf("the policies volume maps %d of the ConfigMap's %d keys", len(items), len(cm.Data))
		}
		mount := filepath.Join(t.TempDir(), "policies")
		kubeletMount(t, mount, cm.Data, items)
		b, err := policy.Load(mount, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := policy.RunTests(context.Background(), b); err != nil || n == 0 {
			t.Errorf("the policies' own tests: %d passed, %v", n, err)
		}
		// The loader checks that policy.path exists: point it at the mount laid out here.
		authzConfig = []byte(strings.Replace(string(authzConfig), "path: "+declared.Policy.Path, "path: "+mount, 1))
	} else if declared.Policy.Path != "" {
		t.Errorf("policy.path %s without a policies ConfigMap", declared.Policy.Path)
	}
	authzConfig = mountSecrets(t, w.authzPod, sharedStateFiles(t, authzConfig, w.authzPod))
	if _, err := authzconfig.Parse(authzConfig); err != nil {
		t.Errorf("authz config does not load: %v\n%s", err, authzConfig)
	}
}

// mountSecrets stands in for the kubelet's Secret volumes of the authz container: each mount
// path the config names is moved to a temporary directory, and each file the config names
// there is written (48 random bytes, base64: a client secret, a DPoP nonce key), so that the
// loader, which reads those files, can check the config. A file the config names under a
// Secret volume with items must be one of the items projected.
func mountSecrets(t *testing.T, pod *corev1.PodSpec, cfg []byte) []byte {
	t.Helper()
	c := container(pod, "authz")
	text := string(cfg)
	for _, m := range c.VolumeMounts {
		var vol *corev1.Volume
		for i := range pod.Volumes {
			if pod.Volumes[i].Name == m.Name {
				vol = &pod.Volumes[i]
			}
		}
		if vol == nil || vol.Secret == nil || !strings.Contains(text, m.MountPath+"/") {
			continue
		}
		dir := t.TempDir()
		text = strings.ReplaceAll(text, m.MountPath+"/", dir+"/")
		for _, f := range regexp.MustCompile(regexp.QuoteMeta(dir)+`/[A-Za-z0-9._-]+`).FindAllString(text, -1) {
			key := filepath.Base(f)
			if len(vol.Secret.Items) > 0 && !slices.ContainsFunc(vol.Secret.Items, func(it corev1.KeyToPath) bool { return it.Path == key }) {
				t.Errorf("the config names %s, but Secret volume %s projects only %v", key, vol.Name, vol.Secret.Items)
			}
			secret := make([]byte, 48)
			_, _ = rand.Read(secret)
			if err := os.WriteFile(f, []byte(base64.StdEncoding.EncodeToString(secret)), 0o440); err != nil {
				t.Fatal(err)
			}
		}
	}
	return []byte(text)
}

// checkSecretModes: every Secret volume is mounted with a restrictive defaultMode (no write,
// nothing for others: the pod's fsGroup reads it), not the API's 0644 default.
func checkSecretModes(t *testing.T, r *rendering) {
	t.Helper()
	for _, d := range r.deployments {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret == nil {
				continue
			}
			if m := v.Secret.DefaultMode; m == nil || *m&0o337 != 0 {
				t.Errorf("%s: Secret volume %s has defaultMode %v; want at most 0440", d.Name, v.Name, modeString(m))
			}
		}
	}
}

func modeString(m *int32) string {
	if m == nil {
		return "unset (0644)"
	}
	return fmt.Sprintf("%#o", *m)
}

// checkFleetIsolation: the client certificate xds pushes to every fleet for the authz hop is
// not an Envoy's fleet identity: xds mounts the authz-client Secret, never the Envoy client
// (fleet) Secret, and authz admits only that identity (tls.client_uri_sans).
func checkFleetIsolation(t *testing.T, r *rendering, w *wiring) {
	t.Helper()
	var xc struct {
		Authz struct {
			TLS *struct {
				CertFile string `json:"cert_file"`
			} `json:"tls"`
		} `json:"authz"`
	}
	if err := yaml.Unmarshal(w.xdsConfig, &xc); err != nil {
		t.Fatal(err)
	}
	xds := r.deployment("xds")
	if xds == nil {
		t.Fatal("no xds Deployment")
	}
	pod := &xds.Spec.Template.Spec
	fleetSecret := releaseName + "-scopegate-envoy-client-tls"
	for _, v := range pod.Volumes {
		if v.Secret != nil && v.Secret.SecretName == fleetSecret {
			t.Errorf("xds mounts the Envoy fleet certificate Secret %s: it would push an xDS identity to every fleet", fleetSecret)
		}
	}
	if xc.Authz.TLS == nil || xc.Authz.TLS.CertFile == "" {
		return
	}
	secretOf := ""
	for _, m := range container(pod, "xds").VolumeMounts {
		if strings.HasPrefix(xc.Authz.TLS.CertFile, m.MountPath+"/") {
			for _, v := range pod.Volumes {
				if v.Name == m.Name && v.Secret != nil {
					secretOf = v.Secret.SecretName
				}
			}
		}
	}
	if secretOf != releaseName+"-scopegate-authz-client-tls" {
		t.Errorf("xds authz.tls.cert_file %s comes from Secret %q, want the authz client certificate's", xc.Authz.TLS.CertFile, secretOf)
	}
	var ac struct {
		TLS *struct {
			ClientURISANs []string `json:"client_uri_sans"`
		} `json:"tls"`
	}
	if err := yaml.Unmarshal(w.authzConfig, &ac); err != nil {
		t.Fatal(err)
	}
	if ac.TLS == nil || len(ac.TLS.ClientURISANs) != 1 || !strings.HasSuffix(ac.TLS.ClientURISANs[0], "/authz-client") {
		t.Errorf("authz tls %+v: want client_uri_sans admitting only the authz client identity", ac.TLS)
	}
	if doc, ok := r.custom["Certificate/"+releaseName+"-scopegate-authz-client"]; ok && ac.TLS != nil {
		var cert struct {
			Spec struct {
				URIs []string `json:"uris"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &cert); err != nil {
			t.Fatal(err)
		}
		if uris := cert.Spec.URIs; len(uris) != 1 || len(ac.TLS.ClientURISANs) != 1 || uris[0] != ac.TLS.ClientURISANs[0] || strings.Contains(uris[0], "/fleet/") {
			t.Errorf("the authz-client Certificate's URIs %v are not what authz admits %v", uris, ac.TLS.ClientURISANs)
		}
	}
}

// sharedStateFiles: every shared_state file the authz config names (password, answer key,
// CA) is on a Secret volume mounted in the authz container; stand-ins laid out in a temporary
// directory let the loader's file checks run.
func sharedStateFiles(t *testing.T, cfg []byte, pod *corev1.PodSpec) []byte {
	t.Helper()
	const dir = "/etc/scopegate/shared-state/"
	paths := regexp.MustCompile(regexp.QuoteMeta(dir)+`[^\s'"]+`).FindAll(cfg, -1)
	if len(paths) == 0 {
		return cfg
	}
	var authz *corev1.Container
	for i := range pod.Containers {
		if pod.Containers[i].Name == "authz" {
			authz = &pod.Containers[i]
		}
	}
	root := t.TempDir()
	for _, p := range paths {
		mounted := false
		for _, m := range authz.VolumeMounts {
			if strings.HasPrefix(string(p), m.MountPath+"/") {
				for _, v := range pod.Volumes {
					mounted = mounted || (v.Name == m.Name && v.Secret != nil)
				}
			}
		}
		if !mounted {
			t.Errorf("shared_state names %s, which no Secret volume of the authz container holds", p)
		}
		f := filepath.Join(root, strings.TrimPrefix(string(p), dir))
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(strings.Repeat("s", 40)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return []byte(strings.ReplaceAll(string(cfg), dir, root+"/"))
}

// kubeletMount lays a ConfigMap volume out as the kubelet does: the files in a timestamped
// directory, ..data pointing at it, and top-level symlinks through ..data.
func kubeletMount(t *testing.T, mount string, data map[string]string, items []corev1.KeyToPath) {
	t.Helper()
	ts := filepath.Join(mount, "..2026_11_30_18_00_00.000000001")
	for _, it := range items {
		body, ok := data[it.Key]
		if !ok {
			t.Fatalf("volume item %s: no such key in the ConfigMap", it.Key)
		}
		p := filepath.Join(ts, it.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(ts)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Symlink(filepath.Join("..data", e.Name()), filepath.Join(mount, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// checkSecurity: non-root, read-only, no privilege escalation, no capabilities, seccomp, and
// no Kubernetes API access for any pod.
func checkSecurity(t *testing.T, r *rendering) {
	t.Helper()
	for _, sa := range r.serviceAccts {
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Errorf("ServiceAccount %s mounts its token", sa.Name)
		}
	}
	for _, d := range r.deployments {
		pod := d.Spec.Template.Spec
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s: the pod mounts a ServiceAccount token", d.Name)
		}
		psc := pod.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod security context %v: want runAsNonRoot and seccomp RuntimeDefault", d.Name, psc)
		}
		if pod.HostNetwork || pod.HostPID || pod.HostIPC {
			t.Errorf("%s: shares a host namespace", d.Name)
		}
		for _, c := range append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...) {
			sc := c.SecurityContext
			switch {
			case sc == nil:
				t.Errorf("%s/%s: no security context", d.Name, c.Name)
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Errorf("%s/%s: privilege escalation allowed", d.Name, c.Name)
			case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				t.Errorf("%s/%s: writable root filesystem", d.Name, c.Name)
			case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
				t.Errorf("%s/%s: capabilities %v, want all dropped", d.Name, c.Name, sc.Capabilities)
			case sc.RunAsUser != nil && *sc.RunAsUser == 0, sc.Privileged != nil && *sc.Privileged:
				t.Errorf("%s/%s: root or privileged", d.Name, c.Name)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s/%s: resources %v: want CPU and memory requests and a memory limit", d.Name, c.Name, c.Resources)
			}
		}
	}
}

// checkDisruptionAndScaling: PDBs cover the pods of a Deployment; an HPA targets the authz
// Deployment, which then leaves replicas to it; replicas spread over zones and nodes.
func checkDisruptionAndScaling(t *testing.T, r *rendering) {
	t.Helper()
	for _, p := range r.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, d := range r.deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("PDB %s covers %d Deployments, want 1", p.Name, n)
		}
	}
	for _, d := range r.deployments {
		if !slices.ContainsFunc(r.pdbs, func(p *policyPDB) bool { return p.Name == d.Name }) {
			t.Errorf("Deployment %s has no PodDisruptionBudget", d.Name)
		}
		var keys []string
		for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
			keys = append(keys, c.TopologyKey)
			sel, _ := metav1.LabelSelectorAsSelector(c.LabelSelector)
			if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("%s: a topology spread constraint does not select its own pods", d.Name)
			}
		}
		if !slices.Contains(keys, "topology.kubernetes.io/zone") || !slices.Contains(keys, "kubernetes.io/hostname") {
			t.Errorf("%s: spread over %v, want zones and nodes", d.Name, keys)
		}
	}
	for _, h := range r.hpas {
		d := r.deployment("authz")
		if d == nil || h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != d.Name {
			t.Errorf("HPA %s targets %v, want the authz Deployment", h.Name, h.Spec.ScaleTargetRef)
			continue
		}
		if d.Spec.Replicas != nil {
			t.Errorf("the authz Deployment sets replicas %d while an HPA scales it", *d.Spec.Replicas)
		}
		if len(h.Spec.Metrics) != 1 || h.Spec.Metrics[0].Resource == nil || h.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
			t.Errorf("HPA %s: want one CPU metric, got %v", h.Name, h.Spec.Metrics)
		}
	}
}

// checkCustomResources: the ServiceMonitor scrapes the admin port of the authz and xds
// Services; each cert-manager Certificate writes a Secret some pod mounts.
func checkCustomResources(t *testing.T, r *rendering) {
	t.Helper()
	for key, doc := range r.custom {
		kind, name, _ := strings.Cut(key, "/")
		switch kind {
		case "ServiceMonitor":
			var sm struct {
				Spec struct {
					Selector  metav1.LabelSelector `json:"selector"`
					Endpoints []struct {
						Port     string `json:"port"`
						Path     string `json:"path"`
						Interval string `json:"interval"`
						Scheme   string `json:"scheme"`
					} `json:"endpoints"`
					NamespaceSelector struct {
						MatchNames []string `json:"matchNames"`
					} `json:"namespaceSelector"`
				} `json:"spec"`
			}
			strictCustom(t, doc, &sm)
			sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
			if err != nil {
				t.Fatal(err)
			}
			var selected []string
			for _, s := range r.services {
				if sel.Matches(labels.Set(s.Labels)) {
					selected = append(selected, s.Labels["app.kubernetes.io/component"])
					for _, e := range sm.Spec.Endpoints {
						if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) || e.Path != "/metrics" {
							t.Errorf("ServiceMonitor %s scrapes %s%s, not on Service %s", name, e.Port, e.Path, s.Name)
						}
					}
				}
			}
			slices.Sort(selected)
			want := []string{"authz", "xds"}
			if r.deployment("authz") == nil {
				want = []string{"xds"}
			}
			if !slices.Equal(selected, want) {
				t.Errorf("ServiceMonitor %s selects Services of %v, want %v", name, selected, want)
			}
		case "Certificate":
			var cert struct {
				Spec struct {
					SecretName  string            `json:"secretName"`
					DNSNames    []string          `json:"dnsNames"`
					URIs        []string          `json:"uris"`
					CommonName  string            `json:"commonName"`
					Duration    string            `json:"duration"`
					RenewBefore string            `json:"renewBefore"`
					Usages      []string          `json:"usages"`
					PrivateKey  map[string]any    `json:"privateKey"`
					IssuerRef   map[string]string `json:"issuerRef"`
				} `json:"spec"`
			}
			strictCustom(t, doc, &cert)
			if cert.Spec.IssuerRef["name"] == "" {
				t.Errorf("Certificate %s has no issuer", name)
			}
			mounted := false
			for _, d := range r.deployments {
				for _, v := range d.Spec.Template.Spec.Volumes {
					if v.Secret != nil && v.Secret.SecretName == cert.Spec.SecretName {
						mounted = true
					}
				}
			}
			if !mounted {
				t.Errorf("Certificate %s writes Secret %s, which no pod mounts", name, cert.Spec.SecretName)
			}
		default:
			t.Errorf("%s: unexpected custom resource", key)
		}
	}
}

// strictCustom decodes a custom resource into the fields this chart uses; anything else in
// it is an error (a typo the CRD's schema would refuse).
func strictCustom(t *testing.T, doc []byte, into any) {
	t.Helper()
	var whole map[string]any
	if err := yaml.Unmarshal(doc, &whole); err != nil {
		t.Fatal(err)
	}
	spec, err := yaml.Marshal(map[string]any{"spec": whole["spec"]})
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(spec, into); err != nil {
		t.Errorf("%v\n%s", err, doc)
	}
}
