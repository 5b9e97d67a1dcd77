package translate

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/controlplane/translate/names"
)

// resolve makes fleet f's model from cfg, which has passed Validate. It reads and checks
// every certificate, key and CA the fleet's Envoys are sent (through files, so a file shared
// by several fleets is read once). A problem with authz's TLS files stops it at once; those
// of the listeners are all reported together.
func resolve(cfg *config.Config, f *config.Fleet, files *fileCache) (*Model, error) {
	m := &Model{Fleet: f.Name, ExtAuthz: extAuthzModel(cfg.Authz)}

	authz := authzCluster(cfg.Authz)
	if cfg.Authz.TLS != nil {
		tls, secrets, err := resolveAuthzTLS(cfg, f, files)
		if err != nil {
			return nil, err
		}
		authz.TLS = tls
		m.Secrets = append(m.Secrets, secrets...)
	}
	m.Clusters = append(m.Clusters, authz)

	used := map[string]bool{}
	var errs []error
	for li := range f.Listeners {
		l := &f.Listeners[li]
		ml, secrets, err := resolveListener(cfg, l, files)
		if err != nil {
			errs = append(errs, fmt.Errorf("listener %q: %w", l.Name, err))
			continue
		}
		m.Listeners = append(m.Listeners, ml)
		m.Secrets = append(m.Secrets, secrets...)
		for _, vh := range l.VirtualHosts {
			for _, r := range vh.Routes {
				used[r.Upstream] = true
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for i := range cfg.Upstreams {
		if u := &cfg.Upstreams[i]; used[u.Name] {
			m.Clusters = append(m.Clusters, upstreamCluster(u))
		}
	}
	return m, nil
}

func extAuthzModel(a config.Authz) ExtAuthz {
	return ExtAuthz{
		Cluster:                names.AuthzCluster,
		Timeout:                a.Timeout,
		FailureModeAllow:       a.FailureModeAllow,
		StatusOnError:          a.StatusOnError,
		IncludePeerCertificate: a.IncludePeerCertificate,
	}
}

// authzCluster is the cluster of the authz service: gRPC, at a host:port or a Unix socket.
func authzCluster(a config.Authz) Cluster {
	c := Cluster{Name: names.AuthzCluster, ConnectTimeout: a.ConnectTimeout, HTTP2: true}
	if path, ok := a.SocketPath(); ok {
		c.Discovery, c.Socket = DiscoveryStatic, path
		return c
	}
	c.Endpoints = endpoints([]string{a.Address})
	c.Discovery = discovery(c.Endpoints)
	return c
}

// upstreamCluster is the cluster of one of the file's upstreams.
func upstreamCluster(u *config.Upstream) Cluster {
	eps := endpoints(u.Endpoints)
	return Cluster{Name: names.Cluster(u.Name), Discovery: discovery(eps), ConnectTimeout: u.ConnectTimeout, Endpoints: eps}
}

// endpoints parses validated host:port pairs.
func endpoints(hostPorts []string) []Endpoint {
	out := make([]Endpoint, 0, len(hostPorts))
	for _, hp := range hostPorts {
		host, port := splitHostPort(hp)
		out = append(out, Endpoint{Host: host, Port: port})
	}
	return out
}

// discovery is EDS when every endpoint is an IP address; a host name makes Envoy resolve
// them itself, since EDS addresses must be IPs.
func discovery(eps []Endpoint) Discovery {
	for _, ep := range eps {
		if net.ParseIP(ep.Host) == nil {
			return DiscoveryDNS
		}
	}
	return DiscoveryEDS
}

// splitHostPort splits a validated host:port.
func splitHostPort(s string) (string, uint32) {
	host, port, _ := net.SplitHostPort(s)
	p, _ := strconv.ParseUint(port, 10, 16)
	return host, uint32(p)
}

// resolveAuthzTLS is the TLS of fleet f's authz cluster and the secrets it refers to: the
// CA, and the fleet's client certificate (its authz_tls, else authz.tls's), which must not
// carry a fleet's identity. Without server_name, the host of authz.address is matched: a DNS
// name as DNS SAN and SNI, an IP address as IP SAN (SNI can't carry an IP).
func resolveAuthzTLS(cfg *config.Config, f *config.Fleet, files *fileCache) (*UpstreamTLS, []Secret, error) {
	t := cfg.Authz.TLS
	ca, err := caSecret(names.AuthzCASecret, t.CAFile, files)
	if err != nil {
		return nil, nil, fmt.Errorf("authz: tls: %w", err)
	}
	tls := &UpstreamTLS{CASecret: names.AuthzCASecret, ServerName: t.ServerName}
	if tls.ServerName == "" {
		tls.ServerName, _ = splitHostPort(cfg.Authz.Address)
		tls.ServerIP = net.ParseIP(tls.ServerName) != nil
	}
	secrets := []Secret{ca}
	certFile, keyFile, at := cfg.AuthzClientCert(f)
	if certFile != "" {
		if err := notAFleetIdentity(certFile, at, files); err != nil {
			return nil, nil, err
		}
		client, err := certificateSecret(names.AuthzClientSecret, certFile, keyFile, files)
		if err != nil {
			if f.AuthzTLS != nil {
				return nil, nil, fmt.Errorf("authz_tls: %w", err)
			}
			return nil, nil, fmt.Errorf("authz: tls: %w", err)
		}
		tls.ClientSecret = names.AuthzClientSecret
		secrets = append(secrets, client)
	}
	return tls, secrets, nil
}

// resolveListener is listener l's model and the secrets of its TLS: the certificate and, with
// client certificates, their CA.
func resolveListener(cfg *config.Config, l *config.Listener, files *fileCache) (Listener, []Secret, error) {
	ml := Listener{
		Name:        names.Listener(l.Name),
		Address:     l.Address,
		Port:        uint32(l.Port),
		RouteConfig: names.RouteConfig(l.Name),
	}
	var secrets []Secret
	if l.TLS.Enabled() {
		cert, err := certificateSecret(names.ListenerSecret(l.Name), l.TLS.CertFile, l.TLS.KeyFile, files)
		if err != nil {
			return Listener{}, nil, fmt.Errorf("tls: %w", err)
		}
		secrets = append(secrets, cert)
		ml.TLS = &DownstreamTLS{CertSecret: cert.Name}
		if l.TLS.ClientCAFile != "" {
			ca, err := caSecret(names.ClientCASecret(l.Name), l.TLS.ClientCAFile, files)
			if err != nil {
				return Listener{}, nil, fmt.Errorf("tls: client_%w", err)
			}
			secrets = append(secrets, ca)
			ml.TLS.ClientCASecret = ca.Name
			ml.TLS.RequireClientCertificate = l.TLS.RequireClientCertificate
		}
	}
	for i := range l.VirtualHosts {
		ml.VirtualHosts = append(ml.VirtualHosts, resolveVirtualHost(cfg, &l.VirtualHosts[i]))
	}
	return ml, secrets, nil
}

func resolveVirtualHost(cfg *config.Config, vh *config.VirtualHost) VirtualHost {
	out := VirtualHost{Name: vh.Name, Domains: vh.Domains}
	if m := vh.ResourceMetadata; m != nil {
		out.Metadata = &MetadataRoute{
			Name:         names.MetadataRoute(vh.Name),
			Path:         m.DocumentPath(),
			Document:     vh.MetadataDocument(),
			CacheControl: m.CacheControl(),
		}
	}
	for i := range vh.Routes {
		r := &vh.Routes[i]
		u, _ := cfg.Upstream(r.Upstream) // Validate guarantees it exists
		timeout := u.Timeout
		if r.Timeout > 0 {
			timeout = r.Timeout
		}
		var strip []string
		if r.Public {
			strip = cfg.Authz.IdentityHeaders
		}
		out.Routes = append(out.Routes, Route{
			Name:         r.Name,
			Match:        resolveMatch(r.Match),
			Cluster:      names.Cluster(u.Name),
			Timeout:      timeout,
			StripHeaders: strip,
			Extensions:   vh.RouteExtensions(r),
		})
	}
	return out
}

// resolveMatch resolves a route's match into the kinds Envoy's matchers are built from.
func resolveMatch(m config.Match) RouteMatch {
	kind, value := m.PathMatch()
	out := RouteMatch{PathKind: kind, Path: value, IgnoreCase: !m.IsCaseSensitive(), Methods: m.Methods}
	for _, h := range m.Headers {
		kind, value := h.Kind()
		out.Headers = append(out.Headers, HeaderMatch{Name: h.Name, Kind: kind, Value: value, IgnoreCase: h.IgnoreCase, Invert: h.Invert})
	}
	return out
}
