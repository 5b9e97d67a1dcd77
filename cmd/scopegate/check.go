package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/server"
	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/certreload"
	"github.com/scopegate/scopegate/internal/checkreq"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/oauth"
	"github.com/scopegate/scopegate/policies"
)

func init() { subcommands = append(subcommands, newCheckCmd) }

// checkFlags are `scopegate check`'s flags. The request flags become one Envoy-shaped
// CheckRequest (request), whichever way it is then decided.
type checkFlags struct {
	addr, cfgPath, policyPath, query string
	ca, cert, key, serverName        string // --addr over TLS
	tok, claimsFile                  string
	unverified                       bool
	method, path, host, scheme       string
	route, scopes, mode              string
	acrValues                        string
	maxAge                           time.Duration
	headers                          []string
	timeout                          time.Duration
	signing                          signingFlags // a signed --policy bundle
}

// request is the CheckRequest Envoy would send for the flags: the token as the Authorization
// header, --route/--scope/--mode as the route's context extensions.
func (f *checkFlags) request() (*authv3.CheckRequest, error) {
	r := checkreq.Request{Method: f.method, Path: f.path, Host: f.host, Scheme: f.scheme, ContextExtensions: map[string]string{}}
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, usageErr(fmt.Errorf("--header %q: want name:value", h))
		}
		r.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if f.tok != "" {
		r.Add("authorization", "Bearer "+strings.TrimPrefix(f.tok, "Bearer "))
	}
	for k, v := range map[string]string{contract.ExtRoute: f.route, contract.ExtScopes: f.scopes, contract.ExtMode: f.mode,
		contract.ExtACRValues: strings.Join(strings.Fields(f.acrValues), " ")} {
		if v != "" {
			r.ContextExtensions[k] = v
		}
	}
	if f.maxAge != 0 {
		if f.maxAge < 0 || f.maxAge%time.Second != 0 {
			return nil, usageErr(fmt.Errorf("--max-age %s: want a whole number of seconds (5m, 300s)", f.maxAge))
		}
		r.ContextExtensions[contract.ExtMaxAge] = contract.FormatMaxAge(f.maxAge)
	}
	return r.Build()
}

// checkOutput is what `scopegate check` prints.
type checkOutput struct {
	Decision string `json:"decision"` // allow or deny, as Envoy would act on the answer
	// Unverified: the token was decoded, not verified (--unverified, --claims).
	Unverified bool   `json:"unverified,omitempty"`
	Authz      string `json:"authz,omitempty"` // --addr: the authz asked
	Status     int    `json:"status"`          // HTTP status to the client (200: forwarded upstream)
	GRPCCode   string `json:"grpc_code"`
	// Allowed: headers set on (and removed from) the request to the upstream, "name: value".
	UpstreamHeaders []string `json:"upstream_headers,omitempty"`
	UpstreamRemoved []string `json:"upstream_headers_removed,omitempty"`
	// Headers of the response to the client (a denial's, or those added on allow), in order,
	// "name: value" (a denial may carry two WWW-Authenticate challenges).
	ResponseHeaders []string      `json:"response_headers,omitempty"`
	Body            string        `json:"body,omitempty"`
	Token           *tokenReport  `json:"token,omitempty"`
	StepUp          *stepUpReport `json:"step_up,omitempty"`
	Policy          *policyReport `json:"policy,omitempty"`
}

// stepUpReport is, in-process, the route's step-up requirement (--acr-values, --max-age)
// against the token's sign-in: required against actual, as the decision log says it. Never
// the token.
type stepUpReport struct {
	Required struct {
		ACRValues []string `json:"acr_values,omitempty"`
		MaxAge    string   `json:"max_age,omitempty"`
	} `json:"required"`
	Token struct {
		ACR      string `json:"acr"`
		AuthTime string `json:"auth_time,omitempty"`
		Age      string `json:"age,omitempty"`
	} `json:"token"`
	Met    bool   `json:"met"`
	Detail string `json:"detail,omitempty"`
	Error  string `json:"error,omitempty"`
}

// reportStepUp compares the route's requirement in req with id's sign-in; nil when the route
// requires nothing.
func reportStepUp(req *authv3.CheckRequest, id *token.Identity) *stepUpReport {
	su, met, err := check.StepUpReport(req.GetAttributes().GetContextExtensions(), id, time.Now())
	if err != nil {
		return &stepUpReport{Error: err.Error()}
	}
	if su == nil {
		return nil
	}
	r := &stepUpReport{Met: met}
	r.Required.ACRValues = strings.Fields(su.ACRValues)
	if su.MaxAge >= 0 {
		r.Required.MaxAge = (time.Duration(su.MaxAge) * time.Second).String()
	}
	r.Token.ACR = id.ACR
	if !id.AuthTime.IsZero() {
		r.Token.AuthTime = id.AuthTime.UTC().Format(time.RFC3339)
		r.Token.Age = su.Age(id).Truncate(time.Second).String()
	}
	if !met {
		r.Detail = su.Detail(id)
	}
	return r
}

// tokenReport is, in-process, what verification found: the identity, or why it failed (in
// the detail an operator needs; the client only ever gets the short description).
type tokenReport struct {
	Verified bool   `json:"verified"`
	Issuer   string `json:"issuer,omitempty"`
	Subject  string `json:"subject,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Scopes   string `json:"scopes,omitempty"`
	// IssuedAt and ExpiresAt are iat and exp as times (the input shows them as NumericDates).
	IssuedAt  string `json:"issued_at,omitempty"`
	ExpiresAt string `json:"expires_at,omitempty"`
	// ACR, AMR and AuthTime are the user's sign-in as the token states it.
	ACR      string   `json:"acr,omitempty"`
	AMR      []string `json:"amr,omitempty"`
	AuthTime string   `json:"auth_time,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// policyReport is, in-process, the policy's own view: decision, the rules that fired, input.
type policyReport struct {
	Revision string           `json:"revision"`
	Decision *policy.Decision `json:"decision,omitempty"`
	Error    string           `json:"error,omitempty"`
	Fired    []string         `json:"rules_fired"`
	Input    any              `json:"input"`
}

func newCheckCmd() *cobra.Command {
	var f checkFlags
	cmd := &cobra.Command{
		Use:   "check [--addr HOST:PORT | --config FILE | --policy DIR] [--token JWT | --claims FILE] --method GET --path /orders/1 [--route NAME --scope \"a b\"]",
		Short: "Ask for one request's decision, as Envoy would (exit 0 allow, 1 deny, 2 usage or config error)",
		Long: `Build the CheckRequest Envoy would send for one request and decide it:

  --addr HOST:PORT   send it to a running scopegate authz over gRPC (TLS with --ca, mutual
                     TLS with --cert and --key too)
  --config FILE      decide it in-process with the Check service that config builds: the token
                     is verified with the configured issuers (their keys fetched now) and the
                     configured policy (or --policy) runs, exactly as in scopegate authz
  neither            evaluate --policy (or the built-in policy) for --claims, or for --token
                     decoded WITHOUT verification, which needs --unverified

Prints the decision, the status, headers and body Envoy would get; in-process also what the
token verification found and the policy's decision, rules fired and input.
Exit status: 0 allow, 1 deny, 2 usage or config error (or authz unreachable).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := usageIfBare(cmd); err != nil {
				return err
			}
			return runCheck(cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "", "ask the scopegate authz listening here (gRPC; host:port or unix:///path)")
	fl.StringVar(&f.ca, "ca", "", "with --addr: CA file to verify authz's TLS certificate (plaintext without it)")
	fl.StringVar(&f.cert, "cert", "", "with --addr: client certificate, for an authz that requires one (mutual TLS)")
	fl.StringVar(&f.key, "key", "", "with --addr: the client certificate's key")
	fl.StringVar(&f.serverName, "server-name", "", "with --addr: the name authz's certificate must have (default: the host of --addr)")
	fl.StringVar(&f.cfgPath, "config", "", "authz config: decide in-process as that service would")
	fl.StringVar(&f.policyPath, "policy", "", "policy directory or bundle (default: the config's, else the built-in policy)")
	fl.StringVar(&f.query, "query", "", "decision query (default: the config's, else data.scopegate.authz.decision)")
	fl.StringVar(&f.tok, "token", "", "access token, sent as Authorization: Bearer")
	fl.StringVar(&f.claimsFile, "claims", "", "JSON file of token claims (- for stdin), evaluated as an unverified token")
	fl.BoolVar(&f.unverified, "unverified", false, "without --config or --addr: decode --token without verifying it")
	fl.StringVar(&f.method, "method", "GET", "HTTP method")
	fl.StringVar(&f.path, "path", "/", "request path, query included (:path)")
	fl.StringVar(&f.host, "host", "localhost", "request host (:authority)")
	fl.StringVar(&f.scheme, "scheme", "https", "request scheme (:scheme)")
	fl.StringArrayVar(&f.headers, "header", nil, "request header name:value (repeatable)")
	fl.StringVar(&f.route, "route", "", "route name (context extension \"route\", as the control plane sets it)")
	fl.StringVar(&f.scopes, "scope", "", "the route's required scopes, space-separated (context extension \"scopes\"; --scopes works too)")
	fl.StringVar(&f.mode, "mode", "", "the route's mode, enforce or shadow (context extension \"mode\")")
	fl.StringVar(&f.acrValues, "acr-values", "", "the route's accepted acr values, space-separated (context extension \"acr_values\", RFC 9470)")
	fl.DurationVar(&f.maxAge, "max-age", 0, "the route's max_age: how recent the sign-in must be, whole seconds (context extension \"max_age\")")
	fl.DurationVar(&f.timeout, "timeout", 15*time.Second, "bound on the whole check, key fetches included")
	f.signing.add(fl, false)
	return cmd
}

// usageErr marks err as a usage or config error (exit 2; 2 is also what any unmarked error
// exits with, this only makes it explicit).
func usageErr(err error) error { return &exitError{code: 2, err: err} }

func runCheck(cmd *cobra.Command, f *checkFlags) error {
	switch {
	case f.tok != "" && f.claimsFile != "":
		return usageErr(errors.New("give at most one of --token and --claims"))
	case f.addr != "" && (f.cfgPath != "" || f.policyPath != "" || f.query != "" || f.claimsFile != "" || f.unverified || f.signing.key != ""):
		return usageErr(errors.New("--addr asks a running authz: --config, --policy, --query, --claims, --unverified and --verification-key don't apply"))
	case f.addr == "" && (f.ca != "" || f.cert != "" || f.key != "" || f.serverName != ""):
		return usageErr(errors.New("--ca, --cert, --key and --server-name are for --addr"))
	case (f.cert == "") != (f.key == "") || (f.cert != "" && f.ca == ""):
		return usageErr(errors.New("--cert and --key go together, and need --ca"))
	case f.cfgPath != "" && (f.claimsFile != "" || f.unverified):
		return usageErr(errors.New("--config verifies the token: --claims and --unverified don't apply"))
	case f.addr == "" && f.cfgPath == "" && f.tok != "" && !f.unverified:
		return usageErr(errors.New("--token is not verified without --config or --addr: give --config FILE to verify it " +
			"with the configured issuers, --addr HOST:PORT to ask a running authz, or --unverified to decode it without verification"))
	}
	req, err := f.request()
	if err != nil {
		return usageErr(err)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	var out *checkOutput
	switch {
	case f.addr != "":
		out, err = checkRemote(ctx, f, req)
	case f.cfgPath != "":
		out, err = checkWithConfig(ctx, f, req)
	default:
		out, err = checkUnverified(ctx, f, req)
	}
	if err != nil {
		return usageErr(err)
	}
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	if out.Decision != "allow" {
		return &exitError{code: 1, err: fmt.Errorf("denied: %d", out.Status), quiet: true}
	}
	return nil
}

// checkRemote sends req to a running authz: plaintext, or TLS with --ca (mutual with --cert
// and --key, as Envoy connects to an authz with tls.client_ca_file).
func checkRemote(ctx context.Context, f *checkFlags, req *authv3.CheckRequest) (*checkOutput, error) {
	addr := f.addr
	creds := insecure.NewCredentials()
	if f.ca != "" {
		tc, err := certreload.ClientConfig(f.ca, f.cert, f.key, f.serverName)
		if err != nil {
			return nil, fmt.Errorf("--ca/--cert/--key: %w", err)
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("--addr %s: %w", addr, err)
	}
	defer conn.Close()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req, grpc.WaitForReady(false))
	if err != nil {
		if f.ca == "" && status.Code(err) == codes.Unavailable {
			return nil, fmt.Errorf("--addr %s: Check: %w (if authz serves TLS, give --ca, and --cert/--key for mutual TLS)", addr, err)
		}
		return nil, fmt.Errorf("--addr %s: Check: %w", addr, err)
	}
	out := describe(resp)
	out.Authz = addr
	return out, nil
}

// checkWithConfig decides req with the Check service built from the authz config, after
// fetching every issuer's keys (failing at once, naming the URL, when an IdP is down).
func checkWithConfig(ctx context.Context, f *checkFlags, req *authv3.CheckRequest) (*checkOutput, error) {
	cfg, err := config.Load(f.cfgPath)
	if err != nil {
		return nil, err
	}
	if f.policyPath != "" {
		// A bundle given here is verified as authz would verify the bundles it pulls.
		if cfg.Policy.Bundle != nil {
			cfg.Policy.Signing, cfg.Policy.Bundle = cfg.Policy.Bundle.Signing, nil
		}
		cfg.Policy.Path = f.policyPath
	}
	if sc, err := f.signing.signing(nil); err != nil {
		return nil, err
	} else if sc != nil {
		cfg.Policy.Signing = sc
	}
	if f.query != "" {
		cfg.Policy.Query = f.query
	}
	h, err := server.NewHandler(ctx, cfg, server.HandlerOptions{})
	if err != nil {
		return nil, err
	}
	h.Start(ctx)
	for _, src := range h.Sources {
		select {
		case <-src.FirstAttempt():
		case <-ctx.Done():
			return nil, fmt.Errorf("issuer %s: no keys within --timeout: %w", src.Name(), ctx.Err())
		}
		if !src.Ready() {
			return nil, fmt.Errorf("issuer %s: no keys (as scopegate authz would answer 503): %w", src.Name(), src.Err())
		}
	}
	resp, err := h.Service.Check(ctx, req)
	if err != nil {
		return nil, err
	}
	out := describe(resp)
	raw := bearerToken(req)
	if raw == "" {
		return out, nil
	}
	id, verr := h.Verifier.Verify(ctx, raw)
	out.Token = reportToken(id, verr)
	if verr == nil {
		out.StepUp = reportStepUp(req, id)
		out.Policy = explain(ctx, h.Engine, req, id)
	}
	return out, nil
}

// claimsVerifier is the verifier of the no-config mode: it hands over an identity decoded
// from the token or a claims file, without any check. Its output is marked unverified.
type claimsVerifier struct{ id *token.Identity }

func (v claimsVerifier) Verify(context.Context, string) (*token.Identity, error) { return v.id, nil }

// checkUnverified runs req through a Check service whose verifier accepts the decoded
// claims as they are, with --policy or the built-in policy.
func checkUnverified(ctx context.Context, f *checkFlags, req *authv3.CheckRequest) (*checkOutput, error) {
	cfg := config.Default()
	var (
		id  *token.Identity
		err error
	)
	switch {
	case f.tok != "":
		id, err = unverifiedIdentity(f.tok)
	case f.claimsFile != "":
		var raw []byte
		if raw, err = readFileOrStdin(f.claimsFile); err == nil {
			id, err = decodeClaims(raw)
		}
		if err == nil && bearerToken(req) == "" {
			// The Check service needs a credential to get to its verifier; this one is a
			// placeholder for the claims file (never sent anywhere).
			req.Attributes.Request.Http.Headers["authorization"] = "Bearer claims-file"
		}
	}
	if err != nil {
		return nil, err
	}
	vc, err := f.signing.verification(nil)
	if err != nil {
		return nil, err
	}
	opts := policy.Options{Path: f.policyPath, Query: cfg.Policy.Query, EvalTimeout: cfg.Policy.EvalTimeout, Verification: vc}
	if f.query != "" {
		opts.Query = f.query
	}
	if opts.Path == "" {
		opts.FS = policies.Default
	}
	eng, err := policy.New(ctx, opts)
	if err != nil {
		return nil, err
	}
	svc := check.New(check.Options{Verifier: claimsVerifier{id}, Policy: eng, Headers: server.CheckHeaders(cfg.Headers),
		MaxTokenBytes: cfg.Bearer.MaxTokenBytes, ErrorStatus: cfg.Policy.ErrorStatus})
	resp, err := svc.Check(ctx, req)
	if err != nil {
		return nil, err
	}
	out := describe(resp)
	if id != nil {
		out.Unverified = true
		out.Token = reportToken(id, nil)
		out.Token.Verified = false
		out.StepUp = reportStepUp(req, id)
		out.Policy = explain(ctx, eng, req, id)
	}
	return out, nil
}

// explain evaluates the policy for req as the service builds its input (every field a
// policy can read), reporting the rules that fired.
func explain(ctx context.Context, eng *policy.Engine, req *authv3.CheckRequest, id *token.Identity) *policyReport {
	v := policy.NewView(req)
	input := policy.BuildInput(&v, policy.AllFields(), policy.TokenTerm(id))
	dec, fired, err := eng.Explain(ctx, input)
	rep := &policyReport{Revision: eng.Revision().ID, Fired: fired}
	if rep.Fired == nil {
		rep.Fired = []string{}
	}
	if in, jerr := ast.JSON(input); jerr == nil {
		rep.Input = in
	}
	if err != nil {
		rep.Error = err.Error()
	} else {
		rep.Decision = &dec
	}
	return rep
}

func reportToken(id *token.Identity, err error) *tokenReport {
	if err != nil {
		return &tokenReport{Error: err.Error()}
	}
	r := &tokenReport{Verified: true, Issuer: id.Issuer, Subject: id.Subject, ClientID: id.ClientID, Scopes: id.ScopeString, ACR: id.ACR, AMR: id.AMR}
	if !id.IssuedAt.IsZero() {
		r.IssuedAt = id.IssuedAt.UTC().Format(time.RFC3339)
	}
	if !id.ExpiresAt.IsZero() {
		r.ExpiresAt = id.ExpiresAt.UTC().Format(time.RFC3339)
	}
	if !id.AuthTime.IsZero() {
		r.AuthTime = id.AuthTime.UTC().Format(time.RFC3339)
	}
	return r
}

// describe reads Envoy's answer: what the client or the upstream would get.
func describe(resp *authv3.CheckResponse) *checkOutput {
	if dec, err := check.Decoded(resp); err == nil {
		resp = dec
	}
	out := &checkOutput{GRPCCode: codes.Code(resp.GetStatus().GetCode()).String()}
	if resp.GetStatus().GetCode() == int32(codes.OK) {
		out.Decision, out.Status = "allow", 200
		ok := resp.GetOkResponse()
		out.UpstreamHeaders = headerLines(ok.GetHeaders())
		out.UpstreamRemoved = ok.GetHeadersToRemove()
		out.ResponseHeaders = headerLines(ok.GetResponseHeadersToAdd())
		return out
	}
	d := resp.GetDeniedResponse()
	out.Decision, out.Status, out.Body = "deny", int(d.GetStatus().GetCode()), d.GetBody()
	out.ResponseHeaders = headerLines(d.GetHeaders())
	return out
}

func headerLines(hs []*corev3.HeaderValueOption) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.GetHeader().GetKey()+": "+h.GetHeader().GetValue())
	}
	return out
}

// bearerToken is the token in req's Authorization header, if it has one.
func bearerToken(req *authv3.CheckRequest) string {
	v := req.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"]
	tok, ok := strings.CutPrefix(v, "Bearer ")
	if !ok {
		return ""
	}
	return tok
}

// unverifiedIdentity builds an identity from a token's claims, decoded without checking
// anything, the way the verifier would after its checks.
func unverifiedIdentity(tok string) (*token.Identity, error) {
	claims, err := oauth.DecodeClaims(tok)
	if err != nil {
		return nil, fmt.Errorf("--token: %w", err)
	}
	return identityFrom(claims)
}

// decodeClaims builds an identity from claims JSON, the way the verifier would after checks.
func decodeClaims(raw []byte) (*token.Identity, error) {
	var claims map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // 1764460800 stays an integer, not 1.7644608e+09
	if err := dec.Decode(&claims); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	return identityFrom(claims)
}

func identityFrom(claims map[string]any) (*token.Identity, error) {
	return token.IdentityFromClaims("unverified", claims, []string{"scope", "scp"}, []string{"client_id", "azp", "cid"})
}

func readFileOrStdin(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(path)
}
