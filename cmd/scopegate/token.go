package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/scopegate/scopegate/internal/oauth"
	"github.com/scopegate/scopegate/oauthclient"
)

func init() { subcommands = append(subcommands, newTokenCmd) }

// tokenFlags are shared by the token subcommands.
type tokenFlags struct {
	issuer, authURL, tokenURL string
	api                       string // start from the API: its RFC 9728 metadata names the issuer
	cache                     string
	clientID                  string
	scopes                    []string
	httpTimeout               time.Duration
	raw                       bool
	dpop                      bool
	// acrValues and maxAge ask for a stronger or fresher sign-in (OpenID Connect acr_values
	// and max_age, RFC 9470 step-up); maxAge is sent only when its flag is given.
	acrValues []string
	maxAge    time.Duration
}

func (f *tokenFlags) httpClient() *http.Client { return &http.Client{Timeout: f.httpTimeout} }

// tokenClient is the HTTP client for token requests: with bind, it sends a DPoP proof made
// with the key kept next to the token cache, so the provider binds the token to that key.
func (f *tokenFlags) tokenClient(bind bool) (*http.Client, error) {
	hc := f.httpClient()
	if !bind {
		return hc, nil
	}
	k, err := f.dpopKey()
	if err != nil {
		return nil, err
	}
	return k.Client(hc), nil
}

func (f *tokenFlags) dpopKey() (*oauthclient.DPoPKey, error) {
	c, err := f.cacheFile()
	if err != nil {
		return nil, err
	}
	return oauthclient.LoadOrCreateDPoPKey(oauthclient.DPoPKeyPath(c.Path))
}

// isDPoP reports whether a cached token is DPoP-bound (its refreshes need the key too).
func isDPoP(e *oauthclient.Entry) bool { return strings.EqualFold(e.TokenType, "DPoP") }

// cached reads the command's flags and the cache entry of --client-id (the last one by default).
func (f *tokenFlags) cached(cmd *cobra.Command) (oauthclient.Cache, *oauthclient.Entry, error) {
	f.common(cmd)
	c, err := f.cacheFile()
	if err != nil {
		return c, nil, err
	}
	e, err := c.Get(f.clientID)
	return c, e, err
}

func (f *tokenFlags) cacheFile() (oauthclient.Cache, error) {
	if f.cache != "" {
		return oauthclient.Cache{Path: f.cache}, nil
	}
	if env := os.Getenv("SCOPEGATE_TOKEN_CACHE"); env != "" {
		return oauthclient.Cache{Path: env}, nil
	}
	p, err := oauthclient.DefaultCachePath()
	return oauthclient.Cache{Path: p}, err
}

func (f *tokenFlags) addEndpointFlags(cmd *cobra.Command, auth bool) {
	def := "http://localhost:9400"
	if env := os.Getenv("SCOPEGATE_ISSUER"); env != "" {
		def = env
	}
	cmd.Flags().StringVar(&f.issuer, "issuer", def, "the provider's issuer URL (endpoints are discovered from it; default $SCOPEGATE_ISSUER, else the demo idp's)")
	if auth {
		cmd.Flags().StringVar(&f.authURL, "auth-url", "", "authorization endpoint (skips discovery with --token-url)")
	}
	cmd.Flags().StringVar(&f.tokenURL, "token-url", "", "token endpoint (skips discovery)")
	cmd.Flags().StringVar(&f.api, "api", "", "start from the API (its resource URL, e.g. https://localhost:8443): its protected resource metadata (RFC 9728) names the issuer and, unless --scope is given, the scopes")
}

// fromAPI applies --api: the API's metadata names the authorization server (its first one)
// and, when --scope was not given, the scopes to ask for.
func (f *tokenFlags) fromAPI(cmd *cobra.Command, hc *http.Client) error {
	if f.api == "" {
		return nil
	}
	if cmd.Flags().Changed("issuer") {
		return errors.New("--api and --issuer are exclusive: the API's metadata names the issuer")
	}
	md, err := oauthclient.DiscoverResource(cmd.Context(), hc, f.api)
	if err != nil {
		return err
	}
	f.issuer = md.AuthorizationServers[0]
	if !cmd.Flags().Changed("scope") && len(md.ScopesSupported) > 0 {
		f.scopes = md.ScopesSupported
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s: authorization server %s, scopes %s\n", md.Resource, f.issuer, strings.Join(f.scopeList(), " "))
	return nil
}

func (f *tokenFlags) addScopeFlag(cmd *cobra.Command, def []string, usage string) {
	cmd.Flags().StringSliceVar(&f.scopes, "scope", def, usage)
}

// scopeList accepts both --scope a,b and --scope "a b".
func (f *tokenFlags) scopeList() []string {
	var out []string
	for _, s := range f.scopes {
		out = append(out, strings.Fields(s)...)
	}
	return out
}

// store caches the entry and reports it: the raw access token with --raw, a summary otherwise.
func (f *tokenFlags) store(cmd *cobra.Command, e *oauthclient.Entry) error {
	c, err := f.cacheFile()
	if err != nil {
		return err
	}
	if err := c.Put(e); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if f.raw {
		_, err := fmt.Fprintln(out, e.AccessToken)
		return err
	}
	fmt.Fprintf(out, "got an access token for %s (%s grant)\n", e.ClientID, strings.ReplaceAll(e.Grant, "_", " "))
	fmt.Fprintf(out, "  scope:   %s\n", orNone(e.Scope))
	if !e.Expiry.IsZero() {
		fmt.Fprintf(out, "  expires: %s (in %s)\n", e.Expiry.Local().Format(time.RFC3339), time.Until(e.Expiry).Round(time.Second))
	}
	if e.RefreshToken != "" {
		fmt.Fprintln(out, "  refresh: yes (scopegate token refresh)")
	}
	fmt.Fprintf(out, "  cached:  %s\n", c.Path)
	if isDPoP(e) {
		fmt.Fprintln(out, "  bound:   DPoP (RFC 9449): each request needs a fresh proof")
		fmt.Fprintln(out, `use it:   scopegate token proof --method GET --url URL   # prints the Authorization and DPoP headers`)
		return nil
	}
	fmt.Fprintln(out, `use it:   curl -H "Authorization: Bearer $(scopegate token print)" ...`)
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Get, refresh, inspect and print OAuth 2.0 access tokens (the demo's client)",
	}
	cmd.PersistentFlags().Duration("http-timeout", 30*time.Second, "timeout of each HTTP request to the provider")
	cmd.PersistentFlags().String("cache", "", "token cache file (default $SCOPEGATE_TOKEN_CACHE or <user cache dir>/scopegate/tokens.json)")
	cmd.AddCommand(newTokenLoginCmd(), newTokenStepUpCmd(), newTokenClientCredentialsCmd(), newTokenRefreshCmd(), newTokenShowCmd(), newTokenPrintCmd(), newTokenProofCmd())
	return cmd
}

// common reads the persistent flags into f.
func (f *tokenFlags) common(cmd *cobra.Command) {
	f.httpTimeout, _ = cmd.Flags().GetDuration("http-timeout")
	f.cache, _ = cmd.Flags().GetString("cache")
}

func newTokenLoginCmd() *cobra.Command {
	var f tokenFlags
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Authorization code + PKCE with a loopback redirect (RFC 8252): prints the URL to open, waits for the redirect",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.common(cmd)
			acrs, maxAge, err := f.stepUp(cmd)
			if err != nil {
				return err
			}
			return f.login(cmd, timeout, acrs, maxAge)
		},
	}
	f.addEndpointFlags(cmd, true)
	cmd.Flags().StringVar(&f.clientID, "client-id", "orders-cli", "public client ID")
	f.addScopeFlag(cmd, []string{"orders:read", "orders:write"}, "scopes to request")
	f.addStepUpFlags(cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the browser's redirect (0: forever)")
	cmd.Flags().BoolVar(&f.raw, "raw", false, "print only the access token")
	cmd.Flags().BoolVar(&f.dpop, "dpop", false, "bind the token to a DPoP key kept next to the cache (RFC 9449); use it with scopegate token proof")
	return cmd
}

// addStepUpFlags adds --acr-values and --max-age: what the sign-in must be (RFC 9470 §4).
func (f *tokenFlags) addStepUpFlags(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&f.acrValues, "acr-values", nil, "ask for a sign-in of one of these authentication context classes, in order of preference (acr_values; \"a b\" or a,b)")
	cmd.Flags().DurationVar(&f.maxAge, "max-age", 0, "ask for a sign-in no older than this (max_age, whole seconds: 5m, 300s); 0 forces a fresh sign-in")
}

// stepUp is the sign-in --acr-values and --max-age ask for.
func (f *tokenFlags) stepUp(cmd *cobra.Command) ([]string, *time.Duration, error) {
	var acrs []string
	for _, v := range f.acrValues {
		acrs = append(acrs, strings.Fields(v)...)
	}
	if !cmd.Flags().Changed("max-age") {
		return acrs, nil, nil
	}
	if f.maxAge < 0 || f.maxAge%time.Second != 0 {
		return nil, nil, fmt.Errorf("--max-age %s: want a whole number of seconds, 0 or more", f.maxAge)
	}
	d := f.maxAge
	return acrs, &d, nil
}

// login runs the authorization code flow for f, asking for a sign-in of one of acrs, at most
// maxAge ago (none: no such request), and caches the token.
func (f *tokenFlags) login(cmd *cobra.Command, timeout time.Duration, acrs []string, maxAge *time.Duration) error {
	hc, err := f.tokenClient(f.dpop)
	if err != nil {
		return err
	}
	if err := f.fromAPI(cmd, hc); err != nil {
		return err
	}
	ep, err := oauthclient.ResolveEndpoints(cmd.Context(), hc, f.issuer, f.authURL, f.tokenURL, true)
	if err != nil {
		return err
	}
	errOut := cmd.ErrOrStderr()
	e, err := oauthclient.Login(cmd.Context(), hc, oauthclient.LoginOptions{
		Endpoints: ep, ClientID: f.clientID, Scopes: f.scopeList(), Timeout: timeout, ACRValues: acrs, MaxAge: maxAge,
		ShowURL: func(u string) {
			fmt.Fprintf(errOut, "Open this URL in a browser to sign in (waiting up to %s):\n\n  %s\n\n", timeout, u)
		},
	})
	if err != nil {
		return err
	}
	return f.store(cmd, e)
}

func newTokenStepUpCmd() *cobra.Command {
	var f tokenFlags
	var challenge string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "step-up --challenge '<WWW-Authenticate value>'",
		Short: "Sign in again as a 401 insufficient_user_authentication challenge asks (RFC 9470): its acr_values and max_age",
		Long: `Read the WWW-Authenticate value of a 401 insufficient_user_authentication answer and run the
login it asks for: the authorization code flow with the challenge's acr_values and max_age.

The client, issuer, scopes and DPoP binding default to those of the cached token of --client-id
(the last one obtained), so the new token can do what the old one did, and more.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.common(cmd)
			su, err := oauthclient.ParseStepUp(challenge)
			if err != nil {
				return usageErr(fmt.Errorf("--challenge: %w", err))
			}
			if err := f.fromCached(cmd); err != nil {
				return err
			}
			if !cmd.Flags().Changed("scope") && su.Scope != "" {
				f.scopes = append(f.scopes, su.Scope)
			}
			asked := "acr_values " + orNone(strings.Join(su.ACRValues, " "))
			if su.MaxAge != nil {
				asked += ", max_age " + su.MaxAge.String()
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "step-up for %s at %s: %s (%s challenge)\n", f.clientID, f.issuer, asked, su.Scheme)
			return f.login(cmd, timeout, su.ACRValues, su.MaxAge)
		},
	}
	cmd.Flags().StringVar(&challenge, "challenge", "", "the WWW-Authenticate value of the 401 (a whole \"WWW-Authenticate: ...\" line is fine too)")
	_ = cmd.MarkFlagRequired("challenge")
	f.addEndpointFlags(cmd, true)
	cmd.Flags().StringVar(&f.clientID, "client-id", "", "public client ID (default: the cached token's, else orders-cli)")
	f.addScopeFlag(cmd, nil, "scopes to request (default: the cached token's, and the challenge's scope if it names one)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the browser's redirect (0: forever)")
	cmd.Flags().BoolVar(&f.raw, "raw", false, "print only the access token")
	cmd.Flags().BoolVar(&f.dpop, "dpop", false, "bind the token to a DPoP key kept next to the cache (default: as the cached token is)")
	return cmd
}

// fromCached fills, from the cached token of --client-id (or the last one), what the flags
// leave unset: the client, its issuer, its scopes and whether it is DPoP-bound. Without a
// cached token, the flags' defaults stand.
func (f *tokenFlags) fromCached(cmd *cobra.Command) error {
	c, err := f.cacheFile()
	if err != nil {
		return err
	}
	cached, err := c.Clients() // a cache that can't be read is an error, an empty one is not
	if err != nil {
		return err
	}
	e, err := c.Get(f.clientID)
	if err != nil || len(cached) == 0 {
		if f.clientID == "" {
			f.clientID = "orders-cli"
		}
		return nil // nothing cached for the client: a first sign-in with the defaults
	}
	if e.Grant == "client_credentials" {
		return fmt.Errorf("the cached token for %s is a client credentials token: step-up needs a user's sign-in; give --client-id of a client that signs users in (orders-cli)", e.ClientID)
	}
	f.clientID = e.ClientID
	if !cmd.Flags().Changed("issuer") && !cmd.Flags().Changed("api") && e.Issuer != "" {
		f.issuer = e.Issuer
	}
	if !cmd.Flags().Changed("scope") && e.Scope != "" {
		f.scopes = strings.Fields(e.Scope)
	}
	if !cmd.Flags().Changed("dpop") {
		f.dpop = isDPoP(e)
	}
	return nil
}

func newTokenClientCredentialsCmd() *cobra.Command {
	var f tokenFlags
	var secret string
	cmd := &cobra.Command{
		Use:   "client-credentials",
		Short: "Client credentials grant for a confidential client (secret from --client-secret or $SCOPEGATE_CLIENT_SECRET)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.common(cmd)
			if secret == "" {
				secret = os.Getenv("SCOPEGATE_CLIENT_SECRET")
			}
			if secret == "" {
				return errors.New("--client-secret or $SCOPEGATE_CLIENT_SECRET is required")
			}
			hc, err := f.tokenClient(f.dpop)
			if err != nil {
				return err
			}
			if err := f.fromAPI(cmd, hc); err != nil {
				return err
			}
			ep, err := oauthclient.ResolveEndpoints(cmd.Context(), hc, f.issuer, "", f.tokenURL, false)
			if err != nil {
				return err
			}
			e, err := oauthclient.ClientCredentials(cmd.Context(), hc, oauthclient.ClientCredentialsOptions{
				Issuer: ep.Issuer, TokenURL: ep.TokenURL, ClientID: f.clientID, Secret: secret, Scopes: f.scopeList(),
			})
			if err != nil {
				return err
			}
			return f.store(cmd, e)
		},
	}
	f.addEndpointFlags(cmd, false)
	cmd.Flags().StringVar(&f.clientID, "client-id", "reporting-job", "confidential client ID")
	cmd.Flags().StringVar(&secret, "client-secret", "", "client secret (prefer $SCOPEGATE_CLIENT_SECRET: flags end up in shell history)")
	f.addScopeFlag(cmd, nil, "scopes to request (default: all the client may have)")
	cmd.Flags().BoolVar(&f.raw, "raw", false, "print only the access token")
	cmd.Flags().BoolVar(&f.dpop, "dpop", false, "bind the token to a DPoP key kept next to the cache (RFC 9449); use it with scopegate token proof")
	return cmd
}

func newTokenRefreshCmd() *cobra.Command {
	var f tokenFlags
	cmd := &cobra.Command{
		Use:   "refresh",
		Short: "Refresh the cached token (the provider rotates the refresh token: the old one stops working)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, old, err := f.cached(cmd)
			if err != nil {
				return err
			}
			hc, err := f.tokenClient(isDPoP(old))
			if err != nil {
				return err
			}
			e, err := oauthclient.Refresh(cmd.Context(), hc, old, f.scopeList())
			if err != nil {
				return err
			}
			return f.store(cmd, e)
		},
	}
	cmd.Flags().StringVar(&f.clientID, "client-id", "", "whose cached token (default: the last one obtained)")
	f.addScopeFlag(cmd, nil, "ask for fewer scopes than were granted (default: all)")
	cmd.Flags().BoolVar(&f.raw, "raw", false, "print only the access token")
	return cmd
}

func newTokenShowCmd() *cobra.Command {
	var f tokenFlags
	var idToken bool
	cmd := &cobra.Command{
		Use:   "show [TOKEN|-]",
		Short: "Decode a token's header and claims locally (nothing is sent anywhere; the signature is not checked)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f.common(cmd)
			var tok string
			switch {
			case len(args) == 1 && args[0] == "-":
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
				if err != nil {
					return err
				}
				tok = string(b)
			case len(args) == 1:
				tok = args[0]
			default:
				c, err := f.cacheFile()
				if err != nil {
					return err
				}
				e, err := c.Get(f.clientID)
				if err != nil {
					return err
				}
				tok = e.AccessToken
				if idToken {
					if e.IDToken == "" {
						return fmt.Errorf("the cached token for %s has no ID token (log in with --scope openid,...)", e.ClientID)
					}
					tok = e.IDToken
				}
			}
			d, err := oauth.Decode(tok, time.Now())
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(d)
		},
	}
	cmd.Flags().StringVar(&f.clientID, "client-id", "", "whose cached token (default: the last one obtained)")
	cmd.Flags().BoolVar(&idToken, "id-token", false, "show the cached ID token instead of the access token")
	return cmd
}

func newTokenPrintCmd() *cobra.Command {
	var f tokenFlags
	var noRefresh bool
	cmd := &cobra.Command{
		Use:   "print",
		Short: `Print just the cached access token: curl -H "Authorization: Bearer $(scopegate token print)"`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, e, err := f.cached(cmd)
			if err != nil {
				return err
			}
			if e.Expired(time.Now(), 5*time.Second) {
				if noRefresh || e.RefreshToken == "" {
					return fmt.Errorf("the cached token for %s expired at %s: get a new one (scopegate token login / client-credentials)", e.ClientID, e.Expiry.Local().Format(time.RFC3339))
				}
				hc, err := f.tokenClient(isDPoP(e))
				if err != nil {
					return err
				}
				if e, err = oauthclient.Refresh(cmd.Context(), hc, e, nil); err != nil {
					return err
				}
				if err := c.Put(e); err != nil {
					return err
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "scopegate: the cached token had expired: refreshed it")
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), e.AccessToken)
			return err
		},
	}
	cmd.Flags().StringVar(&f.clientID, "client-id", "", "whose cached token (default: the last one obtained)")
	cmd.Flags().BoolVar(&noRefresh, "no-refresh", false, "fail instead of refreshing an expired token")
	return cmd
}

func newTokenProofCmd() *cobra.Command {
	var f tokenFlags
	var method, target, nonce string
	cmd := &cobra.Command{
		Use:   "proof --method GET --url URL",
		Short: "Print the two headers of one request with the cached DPoP-bound token: Authorization: DPoP ... and DPoP: <a fresh proof>",
		Long: "A DPoP proof (RFC 9449) is good for one request: its method and URL (query ignored), once.\n" +
			"Get a bound token first with `scopegate token client-credentials --dpop` (or login --dpop).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, e, err := f.cached(cmd)
			if err != nil {
				return err
			}
			if !isDPoP(e) {
				return fmt.Errorf("the cached token for %s is a %s token, not DPoP-bound: get one with --dpop", e.ClientID, orNone(e.TokenType))
			}
			k, err := f.dpopKey()
			if err != nil {
				return err
			}
			proof, err := k.Proof(strings.ToUpper(method), target, e.AccessToken, nonce)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Authorization: DPoP %s\nDPoP: %s\n", e.AccessToken, proof)
			return err
		},
	}
	cmd.Flags().StringVar(&f.clientID, "client-id", "", "whose cached token (default: the last one obtained)")
	cmd.Flags().StringVar(&method, "method", "GET", "the request's method")
	cmd.Flags().StringVar(&target, "url", "", "the request's URL, as the client calls it (https://host/path)")
	cmd.Flags().StringVar(&nonce, "nonce", "", "the server's DPoP-Nonce, when it asked for one")
	_ = cmd.MarkFlagRequired("url")
	return cmd
}
