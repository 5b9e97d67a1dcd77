package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/spf13/cobra"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/impact"
	"github.com/scopegate/scopegate/extauthz/introspect"
	"github.com/scopegate/scopegate/extauthz/jwks"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/policies"
)

func init() { subcommands = append(subcommands, newPolicyCmd, newCheckCmd) }

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Work with Rego scope policies"}
	var verbose bool
	test := &cobra.Command{
		Use:   "test [DIR|BUNDLE]",
		Short: "Run the policy's Rego unit tests with OPA's tester (as `opa test` does)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "policies"
			if len(args) == 1 {
				path = args[0]
			}
			b, err := policy.Load(path, nil)
			if err != nil {
				return err
			}
			results, err := policy.TestResults(cmd.Context(), b)
			if err != nil {
				return err
			}
			ch := make(chan *tester.Result, len(results))
			failed := 0
			for _, r := range results {
				if !r.Pass() && !r.Skip {
					failed++
				}
				ch <- r
			}
			close(ch)
			// Verbose on failure, as the issue asks: the failing tests' traces are worth reading.
			rep := tester.PrettyReporter{Output: cmd.OutOrStdout(), Verbose: verbose || failed > 0, FailureLine: true}
			if err := rep.Report(ch); err != nil {
				return err
			}
			if failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d policy test(s) failed", failed)}
			}
			return nil
		},
	}
	test.Flags().BoolVarP(&verbose, "verbose", "v", false, "list every test")
	cmd.AddCommand(test, newPolicyImpactCmd())
	return cmd
}

func newPolicyImpactCmd() *cobra.Command {
	var (
		candidate, logPath, baseline, format, query string
		allowFlips                                  bool
		errorStatus                                 int
	)
	cmd := &cobra.Command{
		Use:   "impact --policy NEW_DIR_OR_BUNDLE --log decisions.jsonl [--baseline OLD] [--format text|json] [--allow-flips]",
		Short: "Replay a decision log against a candidate policy and report the decisions that would flip (exit 1 if any)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format: %q is not text or json", format)
			}
			load := func(flag, path string) (*policy.Engine, error) {
				e, err := policy.New(cmd.Context(), policy.Options{Path: path, Query: query, EvalTimeout: time.Second})
				if err != nil {
					return nil, fmt.Errorf("--%s: %w", flag, err)
				}
				return e, nil
			}
			o := impact.Options{CandidateName: candidate, BaselineName: baseline, ErrorStatus: errorStatus}
			var err error
			if o.Candidate, err = load("policy", candidate); err != nil {
				return err
			}
			if baseline != "" {
				if o.Baseline, err = load("baseline", baseline); err != nil {
					return err
				}
			}
			var in io.Reader = cmd.InOrStdin()
			if logPath != "-" {
				f, err := os.Open(logPath)
				if err != nil {
					return fmt.Errorf("--log: %w", err)
				}
				defer f.Close()
				in = f
			}
			rep, err := impact.Run(cmd.Context(), in, o)
			if err != nil {
				return fmt.Errorf("--log %s: %w", logPath, err)
			}
			if format == "json" {
				err = rep.WriteJSON(cmd.OutOrStdout())
			} else {
				err = rep.WriteText(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			if rep.Flips > 0 && !allowFlips {
				return &exitError{code: 1, err: fmt.Errorf("%d decision(s) flip (--allow-flips to accept)", rep.Flips)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&candidate, "policy", "", "the candidate policy: a directory or an OPA bundle (required)")
	f.StringVar(&logPath, "log", "", "the decision log, JSON lines with input (decision_log.include_input); - for stdin (required)")
	f.StringVar(&baseline, "baseline", "", "the policy in force today; without it the logged decisions are the baseline")
	f.StringVar(&format, "format", "text", "text or json")
	f.BoolVar(&allowFlips, "allow-flips", false, "exit 0 even when decisions flip")
	f.IntVar(&errorStatus, "error-status", 500, "the status of a policy error (authz's policy.error_status)")
	f.StringVar(&query, "query", "data.scopegate.authz.decision", "the decision (authz's policy.query)")
	_ = cmd.MarkFlagRequired("policy")
	_ = cmd.MarkFlagRequired("log")
	return cmd
}

func newCheckCmd() *cobra.Command {
	var (
		policyPath, query, tok, claimsFile, cfgPath string
		method, path, route, scopes, host           string
		headers                                     []string
	)
	cmd := &cobra.Command{
		Use:   "check --policy DIR (--token JWT | --claims FILE) --method GET --path /orders/1 [--route NAME --scopes \"a b\"]",
		Short: "Evaluate the policy for one request and explain the decision (exit 0 allow, 1 deny)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			if (tok == "") == (claimsFile == "") {
				return errors.New("give exactly one of --token and --claims")
			}
			var (
				id  *token.Identity
				err error
			)
			opts := policy.Options{Path: policyPath, Query: query}
			switch {
			case tok != "" && cfgPath != "":
				var cfg *config.Config
				if cfg, err = config.Load(cfgPath); err != nil {
					return err
				}
				if policyPath == "" {
					opts.Path, opts.Query = cfg.Policy.Path, cfg.Policy.Query
				}
				id, err = verifyWithConfig(ctx, cfg, strings.TrimPrefix(tok, "Bearer "))
			case tok != "":
				// Without --config the token is decoded, not verified: handy for "what would
				// this token be allowed to do", never a substitute for verification.
				id, err = decodeClaims(tokenPayload(tok))
			default:
				var raw []byte
				if raw, err = readFileOrStdin(claimsFile); err == nil {
					id, err = decodeClaims(raw, nil)
				}
			}
			if err != nil {
				return err
			}
			if opts.Path == "" {
				opts.FS = policies.Default
			}
			eng, err := policy.New(ctx, opts)
			if err != nil {
				return err
			}
			ext := map[string]string{}
			if route != "" {
				ext[contract.ExtRoute] = route
			}
			if scopes != "" {
				ext[contract.ExtScopes] = scopes
			}
			hs := map[string]string{}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok {
					return fmt.Errorf("--header %q: want name:value", h)
				}
				hs[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: strings.ToUpper(method), Path: path, Host: host, Scheme: "https", Protocol: "HTTP/1.1", Headers: hs}},
				ContextExtensions: ext,
			}}
			// The input is built as the service builds it, with every field a policy can read.
			v := policy.NewView(req)
			input := policy.BuildInput(&v, policy.AllFields(), policy.TokenTerm(id))
			dec, fired, err := eng.Explain(ctx, input)
			inJSON, jerr := ast.JSON(input)
			if jerr != nil {
				return jerr
			}
			out := struct {
				Decision *policy.Decision `json:"decision,omitempty"`
				Error    string           `json:"error,omitempty"`
				Revision string           `json:"policy_revision"`
				Fired    []string         `json:"rules_fired"`
				Input    any              `json:"input"`
			}{Revision: eng.Revision().ID, Fired: fired, Input: inJSON}
			if err != nil {
				out.Error = err.Error()
			} else {
				out.Decision = &dec
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			if err := enc.Encode(out); err != nil {
				return err
			}
			if err != nil || !dec.Allow {
				return &exitError{code: 1, err: errors.New("denied")}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&policyPath, "policy", "", "policy directory or bundle (default: the built-in policy, or the config's)")
	f.StringVar(&query, "query", "data.scopegate.authz.decision", "decision query")
	f.StringVar(&tok, "token", "", "access token (decoded only, unless --config is given)")
	f.StringVar(&claimsFile, "claims", "", "JSON file of token claims (- for stdin)")
	f.StringVar(&cfgPath, "config", "", "authz config: verify --token with its issuers first")
	f.StringVar(&method, "method", "GET", "HTTP method")
	f.StringVar(&path, "path", "/", "request path (query allowed)")
	f.StringVar(&host, "host", "localhost", "request host")
	f.StringVar(&route, "route", "", "route name (the ext_authz context extension `route`)")
	f.StringVar(&scopes, "scopes", "", "the route's required scopes, space-separated")
	f.StringArrayVar(&headers, "header", nil, "request header name:value (repeatable)")
	return cmd
}

func tokenPayload(tok string) ([]byte, error) {
	parts := strings.Split(strings.TrimPrefix(tok, "Bearer "), ".")
	if len(parts) != 3 {
		return nil, errors.New("--token: not a JWS compact token")
	}
	return decodeSegment(parts[1])
}

// decodeClaims builds an identity from claims JSON, the way the verifier would after checks.
func decodeClaims(raw []byte, err error) (*token.Identity, error) {
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	return token.IdentityFromClaims("unverified", claims, []string{"scope", "scp"}, []string{"client_id", "azp", "cid"})
}

func verifyWithConfig(ctx context.Context, cfg *config.Config, raw string) (*token.Identity, error) {
	var issuers []token.Issuer
	for _, ic := range cfg.Issuers {
		is := token.Issuer{Config: ic}
		if in := ic.Introspection; in != nil {
			// As the service does: opaque tokens go to the issuer's introspection endpoint.
			secret, key, err := in.Credentials()
			if err != nil {
				return nil, fmt.Errorf("issuer %s: introspection: %w", ic.Name, err)
			}
			c, err := introspect.New(introspect.Options{Name: ic.Name, Issuer: ic.Issuer, Endpoint: in.Endpoint,
				Discovery: ic.Discovery && in.Endpoint == "", ClientID: in.ClientID, ClientSecret: secret, ClientKey: key, KeyID: in.KeyID, JWTResponse: in.JWTResponse, Timeout: ic.FetchTimeout})
			if err != nil {
				return nil, err
			}
			if err := c.Discover(ctx); err != nil {
				return nil, fmt.Errorf("issuer %s: introspection: %w", ic.Name, err)
			}
			is.Introspect = c
		}
		if !ic.HasKeys() {
			issuers = append(issuers, is)
			continue
		}
		src, err := jwks.New(jwks.Options{Name: ic.Name, Issuer: ic.Issuer, Discovery: ic.Discovery, URL: ic.JWKSURI, File: ic.JWKSFile,
			RefreshInterval: ic.RefreshInterval, UnknownKIDInterval: ic.UnknownKIDInterval, FetchTimeout: ic.FetchTimeout, MaxBytes: ic.MaxJWKSBytes})
		if err != nil {
			return nil, err
		}
		changed := src.Changed()
		src.Start(ctx)
		if !src.Ready() {
			select {
			case <-changed:
			case <-ctx.Done():
				return nil, fmt.Errorf("issuer %s: no keys: %w", ic.Name, ctx.Err())
			}
		}
		is.Keys = src
		issuers = append(issuers, is)
	}
	return token.NewVerifier(token.Options{Issuers: issuers}).Verify(ctx, raw)
}

func readFileOrStdin(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(path)
}

func decodeSegment(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("--token: payload is not base64url: %w", err)
	}
	return b, nil
}
