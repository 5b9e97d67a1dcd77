package devstack_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	resource "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"golang.org/x/net/html"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/scopegate/scopegate/controlplane"
	"github.com/scopegate/scopegate/demo/demoapi"
	"github.com/scopegate/scopegate/demo/democert"
	"github.com/scopegate/scopegate/demo/devstack"
	"github.com/scopegate/scopegate/demo/idp"
	authzconfig "github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/internal/checkreq"
	"github.com/scopegate/scopegate/internal/oauth"
	"github.com/scopegate/scopegate/internal/testing/envoysim"
	"github.com/scopegate/scopegate/oauthclient"
)

// repo is the repository root, where the demo's configs live.
const repo = "../.."

// stack is the demo, started in-process on 127.0.0.1:0 from the compose configs.
type stack struct {
	certs string // the demo CA and certificates made for this run
	idp   *devstack.IDP
	authz *devstack.Authz
	api   *devstack.API
	xds   *devstack.XDS
	hc    *http.Client
}

func (s *stack) issuer() string { return s.idp.Provider.Issuer() }

func startStack(t *testing.T) *stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewJSONHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := &stack{hc: &http.Client{Timeout: 10 * time.Second}, certs: t.TempDir()}
	if _, err := democert.WriteSet(s.certs, democert.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	var started []*devstack.Service
	t.Cleanup(func() {
		cancel()
		for _, svc := range started {
			if err := svc.Wait(); err != nil {
				t.Errorf("stopping %s: %v", svc.Name, err)
			}
		}
	})

	// idp: compose/idp.yaml with its listeners on port 0 and the issuer its real URL.
	icfg, err := idp.Load(filepath.Join(repo, "compose", "idp.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	icfg.Listen, icfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
	if s.idp, err = devstack.StartIDP(ctx, icfg, log.With("service", "idp"), devstack.WithIssuerFromListener()); err != nil {
		t.Fatal(err)
	}
	started = append(started, s.idp.Service)

	// authz: compose/authz.local.yaml, keys from that idp.
	// Its policy path is relative to the repository root, where `scopegate dev` runs.
	araw, err := os.ReadFile(filepath.Join(repo, "compose", "authz.local.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(araw, []byte("path: ../policies")) {
		t.Fatal("authz.local.yaml no longer has policy path ../policies: update the test")
	}
	policies, err := filepath.Abs(filepath.Join(repo, "policies"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(araw, []byte("../dev-certs/")) {
		t.Fatal("authz.local.yaml no longer reads ../dev-certs/: update the test")
	}
	araw = bytes.ReplaceAll(araw, []byte("../dev-certs/"), []byte(s.certs+"/"))
	if !bytes.Contains(araw, []byte("client_secret_file: introspection-secret")) {
		t.Fatal("authz.local.yaml no longer has client_secret_file introspection-secret: update the test")
	}
	araw = bytes.Replace(araw, []byte("client_secret_file: "), []byte("client_secret_file: "+filepath.Join(repo, "compose")+"/"), 1)
	acfg, err := authzconfig.Parse(bytes.Replace(araw, []byte("path: ../policies"), []byte("path: "+policies), 1))
	if err != nil {
		t.Fatal(err)
	}
	if len(acfg.Issuers) != 1 {
		t.Fatalf("authz.local.yaml has %d issuers, the test expects the one demo issuer", len(acfg.Issuers))
	}
	acfg.Listen, acfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
	acfg.Issuers[0].Issuer = s.issuer()
	acfg.Issuers[0].JWKSURI = s.issuer() + idp.PathKeys
	acfg.Issuers[0].Introspection.Endpoint = s.issuer() + idp.PathIntrospect
	acfg.Policy.Watch = false
	acfg.DecisionLog.Output = "off"
	if s.authz, err = devstack.StartAuthz(ctx, acfg, log.With("service", "authz")); err != nil {
		t.Fatal(err)
	}
	started = append(started, s.authz.Service)
	if acfg.TLS == nil || acfg.TLS.ClientCAFile == "" {
		t.Fatal("authz.local.yaml: the demo's authz must serve mutual TLS")
	}
	if s.authz.ClientTLS, err = devstack.AuthzClientTLS(s.certs); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	if err := s.authz.WaitReady(rctx); err != nil {
		t.Fatal(err)
	}

	if s.api, err = devstack.StartAPI(ctx, "127.0.0.1:0", log.With("service", "demo-api"), demoapi.WithoutSeed()); err != nil {
		t.Fatal(err)
	}
	started = append(started, s.api.Service)

	// xds: a temporary copy of compose/xds.local.yaml pointing at this authz and this API.
	raw, err := os.ReadFile(filepath.Join(repo, "compose", "xds.local.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	xcfg := string(raw)
	if !strings.Contains(xcfg, "../dev-certs/") {
		t.Fatal("xds.local.yaml no longer reads ../dev-certs/: update the test")
	}
	xcfg = strings.ReplaceAll(xcfg, "../dev-certs/", s.certs+"/")
	for from, to := range map[string]string{"127.0.0.1:9191": s.authz.Server.GRPCAddr(), "127.0.0.1:8081": s.api.Addr} {
		if !strings.Contains(xcfg, `"`+from+`"`) {
			t.Fatalf("xds.local.yaml no longer has %q: update the test", from)
		}
		xcfg = strings.ReplaceAll(xcfg, `"`+from+`"`, `"`+to+`"`)
	}
	xpath := filepath.Join(t.TempDir(), "xds.yaml")
	if err := os.WriteFile(xpath, []byte(xcfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if s.xds, err = devstack.StartXDS(ctx, controlplane.Options{
		ConfigPath: xpath, Logger: log.With("service", "xds"), Listen: "127.0.0.1:0", Admin: "127.0.0.1:0",
	}); err != nil {
		t.Fatal(err)
	}
	started = append(started, s.xds.Service)
	return s
}

// pushed is what the control plane sent an Envoy of fleet "edge".
type pushed struct {
	routes *route.RouteConfiguration
	// authzTLS is the TLS client config Envoy would build for the scopegate_authz cluster
	// from its UpstreamTlsContext and the SDS secrets it references.
	authzTLS *tls.Config
}

// envoyConn is a gRPC connection to addr with Envoy's demo client TLS, expecting serverName.
func envoyConn(t *testing.T, s *stack, serverName, addr string) *grpc.ClientConn {
	t.Helper()
	cfg, err := devstack.EnvoyClientTLS(s.certs, serverName)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// pushedConfig connects to the control plane as an Envoy of fleet "edge" over ADS (state of
// the world, envoysim: CDS and LDS by wildcard, RDS and SDS by the names the listener and the
// authz cluster reference, every response ACKed) and mutual TLS with Envoy's demo
// certificate, and returns the route configuration and the authz cluster's TLS.
func pushedConfig(t *testing.T, s *stack) pushed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn := envoyConn(t, s, "xds", s.xds.CP.XDSAddr())
	defer conn.Close()
	c, err := envoysim.SotW(ctx, conn, &core.Node{Id: "flow-test", Cluster: "edge"}, envoysim.Options{KeepResources: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Wait(ctx, func(c *envoysim.Client) bool {
		return len(c.Names(resource.RouteType)) > 0 && len(c.Names(resource.SecretType)) >= 2
	}); err != nil {
		t.Fatalf("routes and authz secrets not pushed: %v", err)
	}
	cl, ok := c.Resource(resource.ClusterType, "scopegate_authz").(*cluster.Cluster)
	if !ok {
		t.Fatal("no scopegate_authz cluster pushed")
	}
	if cl.GetTransportSocket().GetName() != wellknown.TransportSocketTLS {
		t.Fatalf("scopegate_authz cluster has no TLS transport socket: %v", cl.GetTransportSocket())
	}
	var upstream tlsv3.UpstreamTlsContext
	if err := cl.GetTransportSocket().GetTypedConfig().UnmarshalTo(&upstream); err != nil {
		t.Fatal(err)
	}
	common := upstream.GetCommonTlsContext()
	caName := common.GetCombinedValidationContext().GetValidationContextSdsSecretConfig().GetName()
	if len(common.GetTlsCertificateSdsSecretConfigs()) != 1 || caName == "" || upstream.GetSni() == "" {
		t.Fatalf("authz UpstreamTlsContext: want SNI, one client certificate and the CA by SDS: %v", &upstream)
	}
	certName := common.GetTlsCertificateSdsSecretConfigs()[0].GetName()
	names := c.Names(resource.RouteType)
	if len(names) != 1 {
		t.Fatalf("route configurations %v, want one", names)
	}
	rc := c.Resource(resource.RouteType, names[0]).(*route.RouteConfiguration)

	// SDS: the secrets the authz cluster names, and Envoy's TLS client for authz from them.
	ca, _ := c.Resource(resource.SecretType, caName).(*tlsv3.Secret)
	crt, _ := c.Resource(resource.SecretType, certName).(*tlsv3.Secret)
	if ca == nil || crt == nil {
		t.Fatalf("SDS secrets %s and %s: got %v", caName, certName, c.Names(resource.SecretType))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.GetValidationContext().GetTrustedCa().GetInlineBytes()) {
		t.Fatalf("SDS secret %s holds no CA", caName)
	}
	tc := crt.GetTlsCertificate()
	pair, err := tls.X509KeyPair(tc.GetCertificateChain().GetInlineBytes(), tc.GetPrivateKey().GetInlineBytes())
	if err != nil {
		t.Fatalf("SDS secret %s: %v", certName, err)
	}
	// Fleet isolation: what xds pushes for the authz hop is the authz client identity, never
	// a fleet's xDS identity (every fleet gets this key).
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://scopegate.demo/authz-client" {
		t.Fatalf("the pushed authz client certificate carries %v, want only spiffe://scopegate.demo/authz-client", leaf.URIs)
	}
	san := common.GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames()
	if len(san) != 1 || san[0].GetMatcher().GetExact() != upstream.GetSni() {
		t.Fatalf("authz SAN match %v, want the SNI %q", san, upstream.GetSni())
	}
	return pushed{routes: rc, authzTLS: &tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: upstream.GetSni(),
		Certificates: []tls.Certificate{pair}, NextProtos: common.GetAlpnProtocols(),
	}}
}

// matchRoute finds the route Envoy would pick for method and path: the first route of the
// first virtual host whose path specifier and header matchers (only :method is used) match.
func matchRoute(t *testing.T, rc *route.RouteConfiguration, method, path string) *route.Route {
	t.Helper()
	p, _, _ := strings.Cut(path, "?")
	for _, vh := range rc.VirtualHosts {
		for _, r := range vh.Routes {
			m := r.GetMatch()
			var ok bool
			switch {
			case m.GetPath() != "":
				ok = p == m.GetPath()
			case m.GetPathSeparatedPrefix() != "":
				pre := m.GetPathSeparatedPrefix()
				ok = p == pre || strings.HasPrefix(p, pre+"/")
			case m.GetPrefix() != "":
				ok = strings.HasPrefix(p, m.GetPrefix())
			default:
				t.Fatalf("route %s: path specifier %T not handled by the test", r.Name, m.GetPathSpecifier())
			}
			for _, h := range m.GetHeaders() {
				if h.Name != ":method" {
					t.Fatalf("route %s: header matcher %q not handled by the test", r.Name, h.Name)
				}
				sm := h.GetStringMatch()
				switch {
				case sm.GetExact() != "":
					ok = ok && method == sm.GetExact()
				case sm.GetSafeRegex() != nil:
					ok = ok && regexp.MustCompile(sm.GetSafeRegex().GetRegex()).MatchString(method)
				default:
					t.Fatalf("route %s: :method matcher %v not handled by the test", r.Name, sm)
				}
			}
			if ok {
				return r
			}
		}
	}
	t.Fatalf("no pushed route matches %s %s", method, path)
	return nil
}

// perRoute is the route's ext_authz per-route config as pushed.
func perRoute(t *testing.T, r *route.Route) *extauthzv3.ExtAuthzPerRoute {
	t.Helper()
	a, ok := r.TypedPerFilterConfig[wellknown.HTTPExternalAuthorization]
	if !ok {
		t.Fatalf("route %s has no %s per-route config", r.Name, wellknown.HTTPExternalAuthorization)
	}
	var pr extauthzv3.ExtAuthzPerRoute
	if err := a.UnmarshalTo(&pr); err != nil {
		t.Fatal(err)
	}
	return &pr
}

// envoyCheck builds the CheckRequest Envoy sends for a request on route r: headers lowercased
// (pseudo-headers included), :path with its query, and the route's context_extensions.
func envoyCheck(t *testing.T, r *route.Route, method, path, bearer string) *authv3.CheckRequest {
	t.Helper()
	pr := perRoute(t, r)
	if pr.GetDisabled() {
		t.Fatalf("route %s has ext_authz disabled: Envoy would not call authz", r.Name)
	}
	h := map[string]string{"user-agent": "curl/8.5.0", "accept": "*/*", "x-request-id": "flow-test", "x-forwarded-proto": "http"}
	if bearer != "" {
		h["authorization"] = "Bearer " + bearer
	}
	return checkreq.Request{ID: "flow-test", Method: method, Path: path, Host: "localhost:10000", Scheme: "http",
		Headers: h, ContextExtensions: pr.GetCheckSettings().GetContextExtensions()}.MustBuild()
}

// decision is a CheckResponse as Envoy acts on it.
type decision struct {
	status  int               // 200 for OK, else the denied response's status
	headers map[string]string // headers added upstream (OK) or sent to the client (denied)
	body    string
}

func toDecision(resp *authv3.CheckResponse) decision {
	d := decision{headers: map[string]string{}}
	if resp.GetStatus().GetCode() == 0 {
		d.status = http.StatusOK
		for _, h := range resp.GetOkResponse().GetHeaders() {
			d.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		return d
	}
	dr := resp.GetDeniedResponse()
	d.status, d.body = int(dr.GetStatus().GetCode()), dr.GetBody()
	for _, h := range dr.GetHeaders() {
		k, v := h.GetHeader().GetKey(), h.GetHeader().GetValue()
		if have, ok := d.headers[k]; ok && h.GetAppendAction() == core.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
			v = have + ", " + v // a second challenge, as a client sees the two headers combined
		}
		d.headers[k] = v
	}
	return d
}

// browser drives the idp's login and consent pages the way a user's browser does: it follows
// redirects, keeps cookies, and posts the forms as the pages render them (hidden fields
// included, so the CSRF token comes from the page).
type browser struct {
	t  *testing.T
	hc *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// page is a fetched HTML page and its first form.
type page struct {
	url    *url.URL
	status int
	body   string
	action string
	fields url.Values
}

func (b *browser) do(req *http.Request) (*page, error) {
	resp, err := b.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	p := &page{url: resp.Request.URL, status: resp.StatusCode, body: string(raw), fields: url.Values{}}
	doc, err := html.Parse(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	var walk func(n *html.Node, inForm bool)
	walk = func(n *html.Node, inForm bool) {
		if n.Type == html.ElementNode {
			attr := map[string]string{}
			for _, a := range n.Attr {
				attr[a.Key] = a.Val
			}
			switch {
			case n.Data == "form" && p.action == "":
				p.action, inForm = attr["action"], true
			case n.Data == "input" && inForm && attr["type"] == "hidden":
				p.fields.Set(attr["name"], attr["value"])
			case n.Data == "input" && inForm && attr["type"] == "checkbox":
				if _, checked := attr["checked"]; checked {
					p.fields.Add(attr["name"], attr["value"])
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, inForm)
		}
	}
	walk(doc, false)
	return p, nil
}

func (b *browser) get(u string) (*page, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return b.do(req)
}

// submit posts p's form with its hidden fields plus extra.
func (b *browser) submit(p *page, extra url.Values) (*page, error) {
	if p.action == "" {
		return nil, fmt.Errorf("%s (%d): no form on the page: %s", p.url, p.status, p.body)
	}
	form := url.Values{}
	for k, v := range p.fields {
		form[k] = v
	}
	for k, v := range extra {
		form[k] = v
	}
	u, err := p.url.Parse(p.action)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// login runs `scopegate token login`'s flow (oauthclient.Login: PKCE, loopback redirect) for
// orders-cli, with a browser that signs in as user and allows; it returns the token entry and
// the consent page.
func (s *stack) login(t *testing.T, user string, scopes []string) (*oauthclient.Entry, *page) {
	t.Helper()
	return s.stepUpLogin(t, user, scopes, nil, "")
}

// stepUpLogin is login asking for the sign-in a step-up challenge names (nil: none); code is
// the user's one-time code, entered when the provider shows its second-factor step.
func (s *stack) stepUpLogin(t *testing.T, user string, scopes []string, su *oauthclient.StepUp, code string) (*oauthclient.Entry, *page) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ep, err := oauthclient.Discover(ctx, s.hc, s.issuer())
	if err != nil {
		t.Fatal(err)
	}
	var consent *page
	var browserErr error
	opts := oauthclient.LoginOptions{Endpoints: ep, ClientID: "orders-cli", Scopes: scopes}
	if su != nil {
		opts.ACRValues, opts.MaxAge = su.ACRValues, su.MaxAge
	}
	opts.ShowURL = func(authURL string) {
		browserErr = func() error {
			b := newBrowser(t)
			loginPage, err := b.get(authURL)
			if err != nil {
				return err
			}
			if loginPage.status != http.StatusOK || loginPage.fields.Get("csrf") == "" {
				return fmt.Errorf("login page %s: %d, fields %v", loginPage.url, loginPage.status, loginPage.fields)
			}
			consent, err = b.submit(loginPage, url.Values{"username": {user}, "password": {user}})
			if err != nil {
				return err
			}
			if consent.action == idp.PathSecondFactor {
				if code == "" {
					return fmt.Errorf("the provider asks %s for a second factor: %s", user, consent.body)
				}
				if consent, err = b.submit(consent, url.Values{"code": {code}}); err != nil {
					return err
				}
			}
			if consent.status != http.StatusOK || !strings.Contains(consent.body, `value="allow"`) {
				return fmt.Errorf("consent page %s: %d: %s", consent.url, consent.status, consent.body)
			}
			done, err := b.submit(consent, url.Values{"decision": {"allow"}})
			if err != nil {
				return err
			}
			if done.status != http.StatusOK || done.url.Path != oauthclient.CallbackPath {
				return fmt.Errorf("after consent: %s: %d: %s", done.url, done.status, done.body)
			}
			return nil
		}()
		if browserErr != nil {
			cancel() // Login stops waiting for a redirect that will not come
		}
	}
	entry, err := oauthclient.Login(ctx, s.hc, opts)
	if browserErr != nil {
		t.Fatalf("%s's browser: %v", user, browserErr)
	}
	if err != nil {
		t.Fatalf("%s's login: %v", user, err)
	}
	return entry, consent
}

func (s *stack) clientCredentials(t *testing.T, id, secret string) *oauthclient.Entry {
	t.Helper()
	e, err := oauthclient.ClientCredentials(context.Background(), s.hc, oauthclient.ClientCredentialsOptions{
		Issuer: s.issuer(), TokenURL: s.issuer() + idp.PathToken, ClientID: id, Secret: secret,
	})
	if err != nil {
		t.Fatalf("client credentials for %s: %v", id, err)
	}
	return e
}

func claims(t *testing.T, tok string) *oauth.Decoded {
	t.Helper()
	d, err := oauth.Decode(tok, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDemoFlow is the demo of docs/demo.md without Docker, Envoy or a browser: the services run
// in-process; tokens come from the idp through the real OAuth flows; Envoy's part is played by
// CheckRequests built from the routes the control plane pushed over ADS.
func TestDemoFlow(t *testing.T) {
	s := startStack(t)
	p := pushedConfig(t, s)
	rc := p.routes

	// Envoy calls authz over mutual TLS with what the control plane pushed.
	conn, err := grpc.NewClient(s.authz.Server.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(p.authzTLS)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	authz := authv3.NewAuthorizationClient(conn)
	// checkWith asks authz as Envoy would, with headers added to (or replacing) the request's.
	checkWith := func(t *testing.T, method, path, tok string, headers map[string]string) decision {
		t.Helper()
		req := envoyCheck(t, matchRoute(t, rc, method, path), method, path, tok)
		maps.Copy(req.Attributes.Request.Http.Headers, headers)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := authz.Check(ctx, req)
		if err != nil {
			t.Fatalf("Check %s %s: %v", method, path, err)
		}
		return toDecision(resp)
	}
	check := func(t *testing.T, method, path, tok string) decision { return checkWith(t, method, path, tok, nil) }

	t.Run("authz serves only the authz client identity, not a fleet's certificate", func(t *testing.T) {
		fc := envoyConn(t, s, "authz", s.authz.Server.GRPCAddr())
		defer fc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := authv3.NewAuthorizationClient(fc).Check(ctx, envoyCheck(t, matchRoute(t, rc, http.MethodGet, "/orders"), http.MethodGet, "/orders", "")); status.Code(err) != codes.Unavailable {
			t.Fatalf("Check with edge's fleet certificate: %v; want the handshake refused (tls.client_uri_sans)", err)
		}
	})

	t.Run("the resource metadata document is answered by Envoy", func(t *testing.T) {
		r := matchRoute(t, rc, http.MethodGet, "/.well-known/oauth-protected-resource")
		if !perRoute(t, r).GetDisabled() || r.GetDirectResponse().GetStatus() != 200 {
			t.Fatalf("route %s: want a public direct response, got %v", r.Name, r)
		}
		var doc struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
			ScopesSupported      []string `json:"scopes_supported"`
			ACRValuesSupported   []string `json:"acr_values_supported"`
		}
		if err := json.Unmarshal([]byte(r.GetDirectResponse().GetBody().GetInlineString()), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Resource != "http://127.0.0.1:10000" || strings.Join(doc.AuthorizationServers, ",") != "http://localhost:9400" ||
			strings.Join(doc.ScopesSupported, " ") != "admin orders:read orders:write" || strings.Join(doc.ACRValuesSupported, " ") != idp.ACRMFA {
			t.Fatalf("document %+v", doc)
		}
	})

	t.Run("healthz is public in the pushed config", func(t *testing.T) {
		r := matchRoute(t, rc, http.MethodGet, "/healthz")
		if !perRoute(t, r).GetDisabled() {
			t.Fatalf("route %s: ext_authz not disabled: %v", r.Name, perRoute(t, r))
		}
	})

	// Tokens: client credentials for the two confidential clients, the authorization code flow
	// with PKCE for alice and bob.
	reporting := s.clientCredentials(t, "reporting-job", "reporting-secret")
	legacy := s.clientCredentials(t, "legacy-batch", "legacy-secret") // opaque: introspected
	ops := s.clientCredentials(t, "ops-console", "ops-secret")
	alice, _ := s.login(t, "alice", []string{"orders:read", "orders:write"})
	bob, bobConsent := s.login(t, "bob", []string{"orders:read", "orders:write"})

	for _, tc := range []struct {
		entry *oauthclient.Entry
		sub   string
		scope string
	}{
		{reporting, "reporting-job", "orders:read"},
		{ops, "ops-console", "admin orders:read orders:write"},
		{alice, "alice", "orders:read orders:write"},
		{bob, "bob", "orders:read"},
	} {
		c := claims(t, tc.entry.AccessToken)
		if c.Header["typ"] != idp.AccessTokenType || c.Claims["sub"] != tc.sub || c.Claims["scope"] != tc.scope || c.Claims["iss"] != s.issuer() {
			t.Errorf("%s's token: header %v claims %v; want typ at+jwt, sub %s, scope %q", tc.sub, c.Header, c.Claims, tc.sub, tc.scope)
		}
	}
	if !regexp.MustCompile(`class="refused"><code>orders:write</code>`).MatchString(bobConsent.body) {
		t.Errorf("bob's consent page does not show orders:write as refused:\n%s", bobConsent.body)
	}
	if alice.RefreshToken == "" || bob.RefreshToken == "" {
		t.Fatal("the authorization code flow returned no refresh token")
	}

	const identity = "x-scopegate-"
	tests := []struct {
		name           string
		method, path   string
		token          string
		status         int
		headers        map[string]string // exact values
		headerContains map[string]string
	}{
		{name: "no token", method: "GET", path: "/orders", status: 401,
			headerContains: map[string]string{"www-authenticate": `Bearer realm="scopegate", resource_metadata="http://127.0.0.1:10000/.well-known/oauth-protected-resource"`}},
		{name: "legacy-batch reads with an opaque token", method: "GET", path: "/orders/1", token: legacy.AccessToken, status: 200,
			headers: map[string]string{identity + "subject": "legacy-batch", identity + "client-id": "legacy-batch", identity + "scopes": "orders:read"}},
		{name: "legacy-batch writes with an opaque token", method: "POST", path: "/orders", token: legacy.AccessToken, status: 403,
			headerContains: map[string]string{"www-authenticate": `scope="orders:write"`}},
		{name: "made-up opaque token", method: "GET", path: "/orders", token: "a.b.c.d.e", status: 401,
			headerContains: map[string]string{"www-authenticate": `error_description="the token is not active"`}},
		{name: "garbage token", method: "GET", path: "/orders", token: "not-a-jwt", status: 401,
			headerContains: map[string]string{"www-authenticate": `error="invalid_token"`}},
		{name: "bob writes", method: "POST", path: "/orders", token: bob.AccessToken, status: 403,
			headerContains: map[string]string{"www-authenticate": `error="insufficient_scope"`}},
		{name: "bob reads", method: "GET", path: "/orders?status=shipped", token: bob.AccessToken, status: 200,
			headers: map[string]string{identity + "subject": "bob", identity + "scopes": "orders:read"}},
		{name: "alice writes", method: "POST", path: "/orders", token: alice.AccessToken, status: 200,
			headers: map[string]string{identity + "subject": "alice", identity + "client-id": "orders-cli",
				identity + "scopes": "orders:read orders:write", identity + "issuer": "demo"}},
		{name: "reporting-job reads", method: "GET", path: "/orders/1", token: reporting.AccessToken, status: 200,
			headers: map[string]string{identity + "subject": "reporting-job", identity + "client-id": "reporting-job"}},
		{name: "reporting-job on /admin", method: "GET", path: "/admin/summary", token: reporting.AccessToken, status: 403,
			headerContains: map[string]string{"www-authenticate": `scope="admin"`}},
		{name: "ops-console on /admin", method: "GET", path: "/admin", token: ops.AccessToken, status: 200,
			headers: map[string]string{identity + "subject": "ops-console", identity + "client-id": "ops-console"}},
		{name: "alice on /admin", method: "DELETE", path: "/admin/orders", token: alice.AccessToken, status: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := check(t, tt.method, tt.path, tt.token)
			if d.status != tt.status {
				t.Fatalf("%s %s: status %d, want %d (headers %v, body %s)", tt.method, tt.path, d.status, tt.status, d.headers, d.body)
			}
			for k, v := range tt.headers {
				if d.headers[k] != v {
					t.Errorf("header %s = %q, want %q (all: %v)", k, d.headers[k], v, d.headers)
				}
			}
			for k, v := range tt.headerContains {
				if !strings.Contains(d.headers[k], v) {
					t.Errorf("header %s = %q, want it to contain %q", k, d.headers[k], v)
				}
			}
		})
	}

	t.Run("insufficient_scope names the scope", func(t *testing.T) {
		d := check(t, "POST", "/orders", bob.AccessToken)
		if wa := d.headers["www-authenticate"]; !strings.Contains(wa, `scope="orders:write"`) {
			t.Errorf("www-authenticate %q does not name scope=\"orders:write\"", wa)
		}
		var body struct{ Error, Scope string }
		if err := json.Unmarshal([]byte(d.body), &body); err != nil || body.Error != "insufficient_scope" {
			t.Errorf("body %s: want error insufficient_scope (%v)", d.body, err)
		}
	})

	t.Run("allowed request reaches the demo API with the identity headers", func(t *testing.T) {
		d := check(t, "POST", "/orders", alice.AccessToken)
		if d.status != 200 {
			t.Fatalf("status %d", d.status)
		}
		req, err := http.NewRequest(http.MethodPost, "http://"+s.api.Addr+"/orders", strings.NewReader(`{"item":"grinder","quantity":1}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for k, v := range d.headers { // what Envoy adds upstream on OK
			req.Header.Set(k, v)
		}
		resp, err := s.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got demoapi.Response
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusCreated || got.Order == nil || got.Order.Owner != "alice" {
			t.Fatalf("demo API: %s, %+v", resp.Status, got)
		}
		for k, v := range d.headers {
			if got.Identity[k] != v {
				t.Errorf("demo API echoed %s = %q, want %q", k, got.Identity[k], v)
			}
		}
	})

	// Step-up (RFC 9470): deleting an order needs a second factor from the last five minutes
	// (the orders-delete route's acr_values and max_age). alice's password-only token gets the
	// challenge; the login it asks for (password, then her one-time code) gets a token that
	// passes.
	t.Run("step-up: 401 challenge, step-up login, 200", func(t *testing.T) {
		if c := claims(t, alice.AccessToken).Claims; c["acr"] != idp.ACRPassword || c["auth_time"] == nil {
			t.Fatalf("alice's first token: %v", c)
		}
		d := check(t, "DELETE", "/orders/1", alice.AccessToken)
		if d.status != 401 {
			t.Fatalf("DELETE with a password-only token: %d %v %s", d.status, d.headers, d.body)
		}
		wa := d.headers["www-authenticate"]
		for _, want := range []string{`Bearer realm="scopegate", error="insufficient_user_authentication", error_description="a stronger authentication is required", acr_values="urn:scopegate:demo:mfa", max_age="300"`,
			`resource_metadata="http://127.0.0.1:10000/.well-known/oauth-protected-resource"`} {
			if !strings.Contains(wa, want) {
				t.Errorf("www-authenticate %q lacks %q", wa, want)
			}
		}
		su, err := oauthclient.ParseStepUp(wa) // what `scopegate token step-up --challenge` does
		if err != nil {
			t.Fatal(err)
		}
		stepped, _ := s.stepUpLogin(t, "alice", []string{"orders:read", "orders:write"}, su, "123456")
		c := claims(t, stepped.AccessToken).Claims
		if c["acr"] != idp.ACRMFA || c["auth_time"] == nil {
			t.Fatalf("stepped-up token: %v", c)
		}
		if d := check(t, "DELETE", "/orders/1", stepped.AccessToken); d.status != 200 || d.headers[identity+"subject"] != "alice" {
			t.Fatalf("DELETE with the stepped-up token: %d %v %s", d.status, d.headers, d.body)
		}
		// Scopes first: bob, who can't write, is told about the scope, not sent to step up.
		if d := check(t, "DELETE", "/orders/1", bob.AccessToken); d.status != 403 || !strings.Contains(d.headers["www-authenticate"], `error="insufficient_scope"`) {
			t.Fatalf("bob's DELETE: %d %v", d.status, d.headers)
		}

		// The demo policy asks for step-up itself on an order above 1000 (x-order-amount).
		order := func(tok, amount string) decision {
			t.Helper()
			return checkWith(t, "POST", "/orders", tok, map[string]string{"x-order-amount": amount})
		}
		if d := order(alice.AccessToken, "5000"); d.status != 401 || !strings.Contains(d.headers["www-authenticate"], `error="insufficient_user_authentication", error_description="the request needs a stronger or more recent authentication", acr_values="urn:scopegate:demo:mfa"`) {
			t.Fatalf("large order with a password-only token: %d %v", d.status, d.headers)
		}
		if d := order(alice.AccessToken, "20"); d.status != 200 {
			t.Fatalf("small order: %d %v", d.status, d.headers)
		}
		if d := order(stepped.AccessToken, "5000"); d.status != 200 {
			t.Fatalf("large order with the stepped-up token: %d %v %s", d.status, d.headers, d.body)
		}
	})

	t.Run("refresh rotates the refresh token", func(t *testing.T) {
		ctx := context.Background()
		next, err := oauthclient.Refresh(ctx, s.hc, alice, nil)
		if err != nil {
			t.Fatal(err)
		}
		if next.RefreshToken == "" || next.RefreshToken == alice.RefreshToken || next.AccessToken == alice.AccessToken {
			t.Fatal("refresh did not return a new access and refresh token")
		}
		if d := check(t, "POST", "/orders", next.AccessToken); d.status != 200 || d.headers[identity+"subject"] != "alice" {
			t.Fatalf("refreshed token: %d %v", d.status, d.headers)
		}
		if _, err := oauthclient.Refresh(ctx, s.hc, alice, nil); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
			t.Fatalf("the old refresh token was accepted again (err %v)", err)
		}
		// Reuse of a rotated refresh token revokes its whole grant (OAuth 2.0 Security BCP).
		if _, err := oauthclient.Refresh(ctx, s.hc, next, nil); err == nil {
			t.Fatal("after reuse of the old refresh token, the new one still works: the grant was not revoked")
		}
	})

	t.Run("DPoP-bound token: allowed with its proof, refused replayed, stolen or downgraded", func(t *testing.T) {
		key, err := oauthclient.LoadOrCreateDPoPKey(filepath.Join(t.TempDir(), "dpop-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		e, err := oauthclient.ClientCredentials(context.Background(), key.Client(s.hc), oauthclient.ClientCredentialsOptions{
			Issuer: s.issuer(), TokenURL: s.issuer() + idp.PathToken, ClientID: "reporting-job", Secret: "reporting-secret",
		})
		if err != nil {
			t.Fatal(err)
		}
		jkt, _ := key.Thumbprint()
		if cnf, _ := claims(t, e.AccessToken).Claims["cnf"].(map[string]any); e.TokenType != "DPoP" || cnf["jkt"] != jkt {
			t.Fatalf("token_type %q, cnf %v: want a token bound to %s", e.TokenType, cnf, jkt)
		}
		const method, path = "GET", "/orders/1"
		// The URI the proof names is the one the client called, as Envoy reports it
		// (:scheme http, :authority localhost:10000 in envoyCheck).
		proofFor := func(k *oauthclient.DPoPKey) string {
			p, err := k.Proof(method, "http://localhost:10000"+path, e.AccessToken, "")
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		send := func(authorization, proof string) decision {
			t.Helper()
			h := map[string]string{"authorization": authorization}
			if proof != "" {
				h["dpop"] = proof
			}
			return checkWith(t, method, path, "", h)
		}
		proof := proofFor(key)
		if d := send("DPoP "+e.AccessToken, proof); d.status != 200 || d.headers[identity+"subject"] != "reporting-job" {
			t.Fatalf("with its proof: %d %v %s", d.status, d.headers, d.body)
		}
		thief, err := oauthclient.LoadOrCreateDPoPKey(filepath.Join(t.TempDir(), "thief.pem"))
		if err != nil {
			t.Fatal(err)
		}
		for name, d := range map[string]decision{
			"the same proof replayed":      send("DPoP "+e.AccessToken, proof),
			"stolen, proof of another key": send("DPoP "+e.AccessToken, proofFor(thief)),
			"sent as a Bearer token":       send("Bearer "+e.AccessToken, ""),
		} {
			if d.status != 401 {
				t.Errorf("%s: %d %s, want 401", name, d.status, d.body)
			}
		}
	})

	t.Run("key rotation", func(t *testing.T) {
		// Two tokens signed by the current key: one authz has already verified, one it has not.
		seen := s.clientCredentials(t, "reporting-job", "reporting-secret")
		unseen := s.clientCredentials(t, "reporting-job", "reporting-secret")
		if d := check(t, "GET", "/orders", seen.AccessToken); d.status != 200 {
			t.Fatalf("before rotation: %d %s", d.status, d.body)
		}
		oldKid := claims(t, seen.AccessToken).Header["kid"]

		res, err := idp.RotateKeysAt(context.Background(), s.hc, "http://"+s.idp.AdminAddr)
		if err != nil {
			t.Fatal(err)
		}
		if res.Active.ID == oldKid || len(res.Keys) != 2 {
			t.Fatalf("after rotation: active %s (old %s), %d keys published", res.Active.ID, oldKid, len(res.Keys))
		}
		fresh := s.clientCredentials(t, "reporting-job", "reporting-secret")
		if kid := claims(t, fresh.AccessToken).Header["kid"]; kid != res.Active.ID {
			t.Fatalf("new token signed by %v, want the new key %s", kid, res.Active.ID)
		}
		// The first Check with the new kid makes authz refetch the JWKS: no 401 in between.
		if d := check(t, "GET", "/orders", fresh.AccessToken); d.status != 200 {
			t.Fatalf("token signed by the new key, first Check: %d %v %s", d.status, d.headers, d.body)
		}
		for name, e := range map[string]*oauthclient.Entry{"verified before": seen, "not verified before": unseen} {
			if d := check(t, "GET", "/orders", e.AccessToken); d.status != 200 {
				t.Errorf("old-key token %s the rotation: %d %s", name, d.status, d.body)
			}
		}
	})
}

// TestMain quiets the OIDC library, which logs every route it registers through slog's default
// logger at info level.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(m.Run())
}
