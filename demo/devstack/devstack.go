package devstack

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/scopegate/scopegate/controlplane"
	"github.com/scopegate/scopegate/demo/democert"
	"github.com/scopegate/scopegate/demo/idp"
	authzconfig "github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/internal/certreload"
)

// EnvoyClientTLS is the TLS client config Envoy uses towards xds inside the demo: the demo
// CA, Envoy's fleet certificate from dir (written by democert.WriteSet), and serverName
// expected.
func EnvoyClientTLS(dir, serverName string) (*tls.Config, error) {
	return certreload.ClientConfig(filepath.Join(dir, democert.CAFile), filepath.Join(dir, "envoy.crt"), filepath.Join(dir, "envoy.key"), serverName)
}

// AuthzClientTLS is the TLS client config Envoy uses towards authz inside the demo (the
// certificate xds pushes it by SDS): the demo CA and the authz-client certificate from dir,
// expecting the server name "authz".
func AuthzClientTLS(dir string) (*tls.Config, error) {
	return certreload.ClientConfig(filepath.Join(dir, democert.CAFile), filepath.Join(dir, democert.AuthzClient+".crt"),
		filepath.Join(dir, democert.AuthzClient+".key"), "authz")
}

// Options configure Run.
type Options struct {
	// IDPConfig, AuthzConfig and XDSConfig are the config files (compose/idp.yaml,
	// compose/authz.local.yaml, compose/xds.local.yaml).
	IDPConfig, AuthzConfig, XDSConfig string
	// APIListen is the demo API's address (the upstream in the xds config).
	APIListen string
	// Envoy is the envoy binary ("" runs no Envoy); EnvoyBootstrap its bootstrap file.
	Envoy, EnvoyBootstrap string
	// Logger gets every service's JSON logs, each with a "service" attribute.
	Logger *slog.Logger
	// Out receives the summary and the next steps; EnvoyOutput Envoy's own output.
	Out, EnvoyOutput io.Writer
	// ReadyTimeout bounds the wait for each service to become ready (default 30s).
	ReadyTimeout time.Duration
	// CertsDir, when set, receives a new demo CA and the authz, xds and Envoy certificates at
	// start (the files the local configs and bootstrap name), so every internal hop is mutual
	// TLS with certificates that exist only for this run.
	CertsDir string
}

// Run starts the idp, authz (waiting until it has the idp's keys), the demo API, the xDS control
// plane and, when opts.Envoy is set, Envoy; prints the next steps; and serves until ctx ends or
// a service stops, then stops everything gracefully. Addresses without a host (":9400") are
// bound to 127.0.0.1.
func Run(ctx context.Context, o Options) (err error) {
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	log := o.Logger
	if o.CertsDir != "" {
		if _, err := democert.WriteSet(o.CertsDir, democert.SetOptions{}); err != nil {
			return err
		}
		log.Info("demo CA and certificates written (new at every start)", "dir", o.CertsDir)
	}
	idpCfg, err := idp.Load(o.IDPConfig)
	if err != nil {
		return err
	}
	idpCfg.Listen, idpCfg.Admin = Loopback(idpCfg.Listen), Loopback(idpCfg.Admin)
	authzCfg, err := authzconfig.Load(o.AuthzConfig)
	if err != nil {
		return err
	}
	authzCfg.Listen, authzCfg.Admin = Loopback(authzCfg.Listen), Loopback(authzCfg.Admin)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var started []*Service
	// On the way out (ctx ended, a service failed, or start-up failed): stop everything and
	// collect why each service stopped.
	defer func() {
		cancel()
		for i := len(started) - 1; i >= 0; i-- {
			if werr := started[i].Wait(); werr != nil {
				err = errors.Join(err, werr)
			}
		}
	}()
	ready := func(name string, wait func(context.Context) error) error {
		rctx, rcancel := context.WithTimeout(ctx, o.ReadyTimeout)
		defer rcancel()
		if err := wait(rctx); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		log.Info("ready", "service", name)
		return nil
	}

	ip, err := StartIDP(ctx, idpCfg, log.With("service", "idp"))
	if err != nil {
		return fmt.Errorf("idp (--idp-config %s): %w", o.IDPConfig, err)
	}
	started = append(started, ip.Service)

	az, err := StartAuthz(ctx, authzCfg, log.With("service", "authz"))
	if err != nil {
		return fmt.Errorf("authz (--authz-config %s): %w", o.AuthzConfig, err)
	}
	started = append(started, az.Service)
	if authzCfg.TLS != nil {
		if o.CertsDir == "" {
			return fmt.Errorf("%s has tls: scopegate dev reaches authz with the authz client certificate it makes, so it needs --certs-dir", o.AuthzConfig)
		}
		// Ask for health the way Envoy does: with the authz client certificate xds pushes it.
		if az.ClientTLS, err = AuthzClientTLS(o.CertsDir); err != nil {
			return err
		}
	}
	if err := ready("authz", az.WaitReady); err != nil {
		return err
	}

	api, err := StartAPI(ctx, o.APIListen, log.With("service", "demo-api"))
	if err != nil {
		return fmt.Errorf("demo API: %w", err)
	}
	started = append(started, api.Service)

	xds, err := StartXDS(ctx, controlplane.Options{ConfigPath: o.XDSConfig, Logger: log.With("service", "xds")})
	if err != nil {
		return fmt.Errorf("xds (--xds-config %s): %w", o.XDSConfig, err)
	}
	started = append(started, xds.Service)
	if err := ready("xds", func(ctx context.Context) error {
		return pollReady(ctx, "http://"+dialable(xds.CP.AdminAddr())+"/readyz", xds.Done())
	}); err != nil {
		return err
	}

	s := summary{
		IDP: "http://" + dialable(ip.Addr), Issuer: ip.Provider.Issuer(), IDPAdmin: "http://" + dialable(ip.AdminAddr),
		Authz: dialable(az.Server.GRPCAddr()), AuthzAdmin: "http://" + dialable(az.Server.AdminAddr()),
		API: "http://" + dialable(api.Addr), XDS: dialable(xds.CP.XDSAddr()), XDSAdmin: "http://" + dialable(xds.CP.AdminAddr()),
		AuthzConfig: o.AuthzConfig, CertsDir: o.CertsDir,
	}
	if o.Envoy != "" {
		ev, err := StartEnvoy(ctx, o.Envoy, o.EnvoyBootstrap, o.EnvoyOutput)
		if err != nil {
			return err
		}
		started = append(started, ev.Service)
		if err := ready("envoy", ev.WaitReady); err != nil {
			return err
		}
		s.EnvoyAdmin = "http://" + dialable(ev.AdminAddr)
		s.Envoy = envoyURL(xds.CP, ev.Fleet)
	}
	if err := s.write(o.Out); err != nil {
		return err
	}

	// Serve until ctx ends or any service stops on its own (which is a failure).
	cases := make(chan *Service, len(started))
	for _, svc := range started {
		go func() {
			select {
			case <-svc.Done():
				cases <- svc
			case <-ctx.Done():
			}
		}()
	}
	select {
	case <-ctx.Done():
		log.Info("stopping the demo stack")
	case svc := <-cases:
		if ctx.Err() != nil {
			// Stopped because we were asked to (the signal came while the services were
			// already stopping, e.g. during the summary): not a failure.
			log.Info("stopping the demo stack")
			return nil
		}
		log.Error("a service stopped: stopping the demo stack", "service", svc.Name, "error", svc.err)
		if svc.err == nil {
			return fmt.Errorf("%s stopped unexpectedly", svc.Name)
		}
	}
	return nil
}

// envoyURL is the URL of the fleet's first listener, from the control plane's config.
func envoyURL(cp *controlplane.Service, fleet string) string {
	f, ok := cp.Config().Fleet(fleet)
	if !ok || len(f.Listeners) == 0 {
		return ""
	}
	l := f.Listeners[0]
	scheme := "http"
	if l.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + dialable(net.JoinHostPort(l.Address, strconv.Itoa(l.Port)))
}

// summary is what `scopegate dev` prints once everything is ready.
type summary struct {
	IDP, Issuer, IDPAdmin string
	Authz, AuthzAdmin     string
	API, XDS, XDSAdmin    string
	Envoy, EnvoyAdmin     string
	AuthzConfig           string
	CertsDir              string
}

var summaryTmpl = template.Must(template.New("summary").Parse(strings.TrimLeft(`
scopegate dev: the demo is running on localhost (NOT FOR PRODUCTION: its passwords and secrets are public)

  idp        {{.IDP}}  issuer {{.Issuer}}, admin {{.IDPAdmin}}
  authz      {{.Authz}} (gRPC Check), admin {{.AuthzAdmin}}/readyz
  xds        {{.XDS}} (ADS), admin {{.XDSAdmin}}/status
  demo API   {{.API}} (direct, without the gate)
{{- if .CertsDir}}
  mTLS       Envoy -> authz and Envoy -> xds, with a demo CA made for this run in {{.CertsDir}}/
{{- end}}
{{- if .Envoy}}
  envoy      {{.Envoy}} (admin {{.EnvoyAdmin}})
{{- else}}
  envoy      not started (no envoy binary on PATH): the checks below go through 'scopegate check'
{{- end}}

Next steps, in another shell from the repository root (bin/scopegate was built by make run):

  # a token for the batch job (client credentials, orders:read only)
  SCOPEGATE_CLIENT_SECRET=reporting-secret bin/scopegate token client-credentials --client-id reporting-job
  bin/scopegate token show
{{- if .Envoy}}

  curl -i {{.Envoy}}/orders                                                      # 401, no token
  curl -i -H "Authorization: Bearer $(bin/scopegate token print)" {{.Envoy}}/orders  # 200, identity echoed
  curl -i -H "Authorization: Bearer $(bin/scopegate token print)" -X POST \
       -d '{"item":"grinder","quantity":1}' {{.Envoy}}/orders                  # 403 insufficient_scope
{{- end}}

  # ask the running authz, as Envoy would (exit 0 allow, 1 deny)
{{- if .CertsDir}}
  AUTHZ="--addr {{.Authz}} --ca {{.CertsDir}}/ca.crt --cert {{.CertsDir}}/authz-client.crt --key {{.CertsDir}}/authz-client.key --server-name authz"
{{- else}}
  AUTHZ="--addr {{.Authz}}"
{{- end}}
  bin/scopegate check $AUTHZ --path /orders --route orders-read --scope orders:read     # 401, no token: exit 1
  bin/scopegate check $AUTHZ --token "$(bin/scopegate token print)" \
      --method POST --path /orders --route orders-write --scope orders:write       # 403 insufficient_scope: exit 1

  # the same decision in-process, with what the policy saw and which rules fired
  bin/scopegate check --config {{.AuthzConfig}} --token "$(bin/scopegate token print)" \
      --method POST --path /orders --route orders-write --scope orders:write       # deny: exit 1

  # a user: authorization code + PKCE; open the printed URL, sign in as alice/alice (or bob/bob)
  bin/scopegate token login
  # step-up (RFC 9470): deleting an order needs a second factor (alice's demo code: 123456)
  bin/scopegate check $AUTHZ --token "$(bin/scopegate token print)" --method DELETE --path /orders/1 \
      --route orders-delete --scope orders:write --acr-values urn:scopegate:demo:mfa --max-age 5m  # 401 + challenge: exit 1
  bin/scopegate token step-up --challenge '<the www-authenticate value of that 401>'
  bin/scopegate token refresh                              # rotates the refresh token
  bin/scopegate idp rotate --admin {{.IDPAdmin}}   # new signing key; the old one stays published

Ctrl-C stops everything.
`, "\n")))

func (s summary) write(w io.Writer) error {
	if err := summaryTmpl.Execute(w, s); err != nil {
		return fmt.Errorf("print next steps: %w", err)
	}
	return nil
}
