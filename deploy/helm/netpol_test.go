package helm

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// endpoint is a pod (or an address outside the cluster) that connects or is connected to.
type endpoint struct {
	name      string
	namespace string // "" outside the cluster
	nsLabels  map[string]string
	labels    map[string]string
	ip        netip.Addr
	ports     map[string]int32 // named ports it listens on
}

type dest struct {
	to    *endpoint
	port  string
	proto corev1.Protocol
}

func (d dest) String() string { return fmt.Sprintf("%s:%s", d.to.name, d.port) }

func nsLabels(ns string, extra ...string) map[string]string {
	m := map[string]string{"kubernetes.io/metadata.name": ns}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

func componentLabels(component string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "scopegate", "app.kubernetes.io/instance": releaseName, "app.kubernetes.io/component": component}
}

// checkNetworkPolicies evaluates the rendered NetworkPolicies, as a conforming network
// plugin would, over a small world (the release's pods, an upstream, pods of other
// namespaces, Prometheus, cluster DNS, the IdP on the internet) and compares every allowed
// connection with the intended ones: only Envoy reaches authz and xds, only authz (in
// sidecar mode: the Envoy pod holding it) reaches the IdP, xds reaches nothing.
func checkNetworkPolicies(t *testing.T, r *rendering, sidecar bool) {
	t.Helper()
	if len(r.policies) == 0 {
		t.Fatal("no NetworkPolicies rendered")
	}
	ns := nsLabels(namespace)
	envoyDeployed := r.deployment("envoy") != nil
	podPorts := func(component string) map[string]int32 {
		out := map[string]int32{}
		if d := r.deployment(component); d != nil {
			for _, c := range d.Spec.Template.Spec.Containers {
				for _, p := range c.Ports {
					out[p.Name] = p.ContainerPort
				}
			}
		}
		return out
	}
	envoy := &endpoint{name: "envoy", namespace: namespace, nsLabels: ns, labels: componentLabels("envoy"), ip: netip.MustParseAddr("10.0.0.2"), ports: podPorts("envoy")}
	if !envoyDeployed {
		// Envoys outside the chart that carry its envoy labels, in the release's namespace.
		envoy.ports = map[string]int32{"http": 10000}
	}
	world := []*endpoint{
		envoy,
		{name: "xds", namespace: namespace, nsLabels: ns, labels: componentLabels("xds"), ip: netip.MustParseAddr("10.0.0.4"), ports: podPorts("xds")},
		{name: "upstream", namespace: namespace, nsLabels: ns, labels: map[string]string{"app": "orders"}, ip: netip.MustParseAddr("10.0.0.5"), ports: map[string]int32{"http": 8080}},
		{name: "foreign", namespace: "shop", nsLabels: nsLabels("shop"), labels: map[string]string{"app": "client"}, ip: netip.MustParseAddr("10.0.1.1")},
		{name: "prometheus", namespace: "monitoring", nsLabels: nsLabels("monitoring"), labels: map[string]string{"app.kubernetes.io/name": "prometheus"}, ip: netip.MustParseAddr("10.0.2.1")},
		{name: "fleet2", namespace: "mesh", nsLabels: nsLabels("mesh", "scopegate.io/fleet", "internal"), labels: map[string]string{"app": "envoy"}, ip: netip.MustParseAddr("10.0.3.1")},
		{name: "dns", namespace: "kube-system", nsLabels: nsLabels("kube-system"), labels: map[string]string{"k8s-app": "kube-dns"}, ip: netip.MustParseAddr("10.0.9.10"), ports: map[string]int32{"dns": 53}},
		{name: "idp", ip: netip.MustParseAddr("203.0.113.10"), ports: map[string]int32{"https": 443}},
		// The shared state store (Valkey) in its own namespace, as ci/sharedstate-values.yaml says.
		{name: "store", namespace: "data", nsLabels: nsLabels("data"), labels: map[string]string{"app.kubernetes.io/name": "valkey"},
			ip: netip.MustParseAddr("10.0.4.1"), ports: map[string]int32{"redis": 6379}},
	}
	if !sidecar {
		world = append(world, &endpoint{name: "authz", namespace: namespace, nsLabels: ns, labels: componentLabels("authz"), ip: netip.MustParseAddr("10.0.0.3"), ports: podPorts("authz")})
	}
	var dests []dest
	for _, e := range world {
		for name := range e.ports {
			proto := corev1.ProtocolTCP
			if name == "dns" {
				proto = corev1.ProtocolUDP
			}
			dests = append(dests, dest{to: e, port: name, proto: proto})
		}
	}

	got := map[string]bool{}
	for _, src := range world {
		if src.namespace == "" {
			continue
		}
		for _, d := range dests {
			if d.to == src {
				continue
			}
			if allowed(r.policies, src, d, networkingv1.PolicyTypeEgress) && allowed(r.policies, d.to, dest{to: src}, networkingv1.PolicyTypeIngress, d) {
				got[src.name+" -> "+d.String()] = true
			}
		}
	}

	// The intended connections.
	want := map[string]bool{}
	add := func(src string, ds ...string) {
		for _, d := range ds {
			want[src+" -> "+d] = true
		}
	}
	open := []string{"upstream:http", "dns:dns", "idp:https", "store:redis"} // nothing restricts these
	shared := strings.Contains(r.manifest, "shared_state:")
	for _, p := range envoyListenerPorts(envoy) {
		open = append(open, "envoy:"+p) // the edge: anyone
	}
	metrics := strings.Contains(r.manifest, "app.kubernetes.io/name: prometheus")
	extraFleet := strings.Contains(r.manifest, "scopegate.io/fleet: internal")
	for _, src := range []string{"upstream", "foreign", "prometheus", "fleet2", "dns", "store"} {
		for _, d := range open {
			if !strings.HasPrefix(d, src+":") {
				add(src, d)
			}
		}
	}
	if envoyDeployed {
		add("envoy", "upstream:http", "dns:dns", "xds:grpc")
		if sidecar {
			add("envoy", "idp:https")
		} else {
			add("envoy", "authz:grpc")
		}
	} else {
		add("envoy", "upstream:http", "dns:dns", "idp:https", "xds:grpc", "store:redis") // no policy of ours
		if !sidecar {
			add("envoy", "authz:grpc")
		}
	}
	if !sidecar {
		add("authz", "dns:dns", "idp:https") // and nothing else: not even the edge
		if shared {
			add("authz", "store:redis")
		}
	} else if shared {
		add("envoy", "store:redis") // its authz sidecar's
	}
	if metrics {
		add("prometheus", "xds:admin")
		if sidecar {
			add("prometheus", "envoy:admin")
		} else {
			add("prometheus", "authz:admin")
		}
	}
	if extraFleet {
		add("fleet2", "xds:grpc")
		if !sidecar {
			add("fleet2", "authz:grpc")
		}
	}
	var extra, missing []string
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	slices.Sort(extra)
	slices.Sort(missing)
	if len(extra) > 0 {
		t.Errorf("NetworkPolicies admit connections they should not:\n  %s", strings.Join(extra, "\n  "))
	}
	if len(missing) > 0 {
		t.Errorf("NetworkPolicies refuse intended connections:\n  %s", strings.Join(missing, "\n  "))
	}
}

// envoyListenerPorts are the Envoy pod's ports clients use (not the ready port, and not the
// sidecar's admin port).
func envoyListenerPorts(e *endpoint) []string {
	var out []string
	for name := range e.ports {
		if name != "ready" && name != "admin" && name != "grpc" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// allowed reports whether the policies selecting pod let the connection through in the given
// direction. For egress, d is the destination; for ingress, peer.to is the source and
// port[0] the destination port on pod. A pod no policy of that type selects is unrestricted.
func allowed(policies []*networkingv1.NetworkPolicy, pod *endpoint, peer dest, typ networkingv1.PolicyType, port ...dest) bool {
	if pod.namespace == "" {
		return true // outside the cluster: no NetworkPolicy applies
	}
	target := peer
	if typ == networkingv1.PolicyTypeIngress {
		target = port[0]
	}
	selected := false
	for _, p := range policies {
		if p.Namespace != pod.namespace || !slices.Contains(p.Spec.PolicyTypes, typ) {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil || !sel.Matches(labels.Set(pod.labels)) {
			continue
		}
		selected = true
		if typ == networkingv1.PolicyTypeIngress {
			for _, rule := range p.Spec.Ingress {
				if peersMatch(p.Namespace, rule.From, peer.to) && portsMatch(rule.Ports, target) {
					return true
				}
			}
		} else {
			for _, rule := range p.Spec.Egress {
				if peersMatch(p.Namespace, rule.To, peer.to) && portsMatch(rule.Ports, target) {
					return true
				}
			}
		}
	}
	return !selected
}

func peersMatch(policyNS string, peers []networkingv1.NetworkPolicyPeer, e *endpoint) bool {
	if len(peers) == 0 {
		return true // no from/to: every peer
	}
	for _, peer := range peers {
		if peer.IPBlock != nil {
			prefix, err := netip.ParsePrefix(peer.IPBlock.CIDR)
			if err != nil || !prefix.Contains(e.ip) {
				continue
			}
			excluded := false
			for _, ex := range peer.IPBlock.Except {
				if p, err := netip.ParsePrefix(ex); err == nil && p.Contains(e.ip) {
					excluded = true
				}
			}
			if !excluded {
				return true
			}
			continue
		}
		if e.namespace == "" {
			continue // selectors match pods only
		}
		if peer.NamespaceSelector != nil {
			nsSel, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
			if err != nil || !nsSel.Matches(labels.Set(e.nsLabels)) {
				continue
			}
		} else if e.namespace != policyNS {
			continue
		}
		if peer.PodSelector != nil {
			podSel, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
			if err != nil || !podSel.Matches(labels.Set(e.labels)) {
				continue
			}
		}
		return true
	}
	return false
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, d dest) bool {
	if len(ports) == 0 {
		return true
	}
	num := d.to.ports[d.port]
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if proto != d.proto {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.StrVal != "":
			if p.Port.StrVal == d.port {
				return true
			}
		case p.EndPort != nil:
			if num >= p.Port.IntVal && num <= *p.EndPort {
				return true
			}
		case p.Port.IntVal == num:
			return true
		}
	}
	return false
}
