package idp

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/scopegate/scopegate/internal/certreload"
	"github.com/scopegate/scopegate/internal/configcheck"
	"github.com/scopegate/scopegate/internal/yamlfile"
)

// Defaults applied by Load when a field is left out.
const (
	DefaultAdminListen          = "127.0.0.1:9401"
	DefaultAccessTokenLifetime  = 5 * time.Minute
	DefaultRefreshTokenLifetime = 24 * time.Hour
	DefaultIDTokenLifetime      = 5 * time.Minute
	DefaultAlgorithm            = "RS256"
	DefaultRSABits              = 2048
)

// Grant types a client may be registered for.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
)

// Config is the demo identity provider's configuration file.
type Config struct {
	// Listen is the address of the OAuth/OIDC endpoints, e.g. ":9400".
	Listen string `yaml:"listen"`
	// Admin is the address of the admin listener (key rotation, health, metrics). It binds to
	// localhost by default: rotating keys is an operator action, not something the network may do.
	Admin string `yaml:"admin"`
	// Issuer is the fixed `iss` of every token, whatever Host header the request came with.
	Issuer string `yaml:"issuer"`
	// API is the one registered resource server: the audience of every access token.
	API API `yaml:"api"`
	// Clients are the registered OAuth clients.
	Clients []Client `yaml:"clients"`
	// Users are the demo resource owners who can log in on the login page.
	Users  []User  `yaml:"users"`
	Tokens Tokens  `yaml:"tokens"`
	Keys   KeysCfg `yaml:"keys"`
	// TLS serves the OAuth endpoints over HTTPS; with client_ca_file, a client that presents
	// a certificate signed by that CA gets certificate-bound access tokens (RFC 8705).
	TLS *certreload.Files `yaml:"tls"`
	// DrainDelay is how long, after SIGTERM, the provider keeps serving (without keep-alive,
	// /readyz saying "draining") before it stops; 0 (the default) stops at once.
	DrainDelay time.Duration `yaml:"drain_delay"`
}

// API is the protected API (resource server) registered with the provider.
type API struct {
	Audience string  `yaml:"audience"`
	Scopes   []Scope `yaml:"scopes"`
}

// Scope is one API scope; the description is shown on the consent page.
type Scope struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
}

// Client is a registered OAuth client.
type Client struct {
	ID string `yaml:"id"`
	// Secret authenticates a confidential client (client_secret_basic or client_secret_post).
	Secret string `yaml:"secret"`
	// Public clients have no secret and must use PKCE with S256.
	Public       bool     `yaml:"public"`
	Scopes       []string `yaml:"scopes"`
	GrantTypes   []string `yaml:"grant_types"`
	RedirectURIs []string `yaml:"redirect_uris"`
	// AccessTokenFormat is "jwt" (default: RFC 9068 JWTs) or "opaque": reference tokens only
	// this provider can read, checked by RFC 7662 introspection (the library's opaque tokens,
	// which are JWE-shaped: five dot-separated parts).
	AccessTokenFormat string `yaml:"access_token_format"`
}

// Access token formats.
const (
	TokenFormatJWT    = "jwt"
	TokenFormatOpaque = "opaque"
)

// User is a demo resource owner.
type User struct {
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Scopes are the API scopes this user may grant to a client.
	Scopes []string `yaml:"scopes"`
	// SecondFactor is the user's demo one-time code, asked for on a second step of the login
	// page when the client requests acr_values urn:scopegate:demo:mfa (RFC 9470 step-up). It
	// is fixed and in this file: a stand-in for TOTP or WebAuthn, for the demo only. Empty:
	// the user has no second factor and can't step up.
	SecondFactor string `yaml:"second_factor"`
}

// Tokens holds the token lifetimes.
type Tokens struct {
	AccessTokenLifetime  time.Duration `yaml:"access_token_lifetime"`
	RefreshTokenLifetime time.Duration `yaml:"refresh_token_lifetime"`
	IDTokenLifetime      time.Duration `yaml:"id_token_lifetime"`
}

// KeysCfg says how signing keys are made and kept.
type KeysCfg struct {
	// Algorithm is RS256 (default), ES256 or EdDSA.
	Algorithm string `yaml:"algorithm"`
	// RSABits is the RSA modulus size for RS256 (default 2048).
	RSABits int `yaml:"rsa_bits"`
	// Storage is "memory" (default: keys live and die with the process) or "file" (keys are kept
	// in File, a JWK set written with 0600 permissions, so tokens survive an idp restart).
	Storage string `yaml:"storage"`
	// File is the key file for storage "file". Keep it out of any repository.
	File string `yaml:"file"`
}

// Load reads, decodes (unknown fields are errors), defaults and validates a config file.
// Relative paths in it (tls files, keys.file) are taken relative to the file's folder.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("idp config: %w", err)
	}
	cfg, err := parse(data, configcheck.DirOf(path))
	if err != nil {
		return nil, fmt.Errorf("idp config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes, defaults and validates a config document; relative paths are left as they
// are (Load resolves them against the file's folder).
func Parse(data []byte) (*Config, error) { return parse(data, "") }

func parse(data []byte, dir configcheck.Dir) (*Config, error) {
	var cfg Config
	if err := yamlfile.Decode(data, &cfg); err != nil {
		return nil, err
	}
	cfg.applyDefaults()
	if t := cfg.TLS; t != nil {
		dir.Resolve(&t.CertFile, &t.KeyFile, &t.ClientCAFile)
	}
	dir.Resolve(&cfg.Keys.File)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func (c *Config) applyDefaults() {
	if c.Admin == "" {
		c.Admin = DefaultAdminListen
	}
	if c.Tokens.AccessTokenLifetime == 0 {
		c.Tokens.AccessTokenLifetime = DefaultAccessTokenLifetime
	}
	if c.Tokens.RefreshTokenLifetime == 0 {
		c.Tokens.RefreshTokenLifetime = DefaultRefreshTokenLifetime
	}
	if c.Tokens.IDTokenLifetime == 0 {
		c.Tokens.IDTokenLifetime = DefaultIDTokenLifetime
	}
	if c.Keys.Algorithm == "" {
		c.Keys.Algorithm = DefaultAlgorithm
	}
	if c.Keys.RSABits == 0 && c.Keys.Algorithm == "RS256" {
		c.Keys.RSABits = DefaultRSABits
	}
	if c.Keys.Storage == "" {
		c.Keys.Storage = "memory"
	}
	for i := range c.Clients {
		if len(c.Clients[i].GrantTypes) == 0 {
			if c.Clients[i].Public || len(c.Clients[i].RedirectURIs) > 0 {
				c.Clients[i].GrantTypes = []string{GrantAuthorizationCode, GrantRefreshToken}
			} else {
				c.Clients[i].GrantTypes = []string{GrantClientCredentials}
			}
		}
	}
}

// Validate checks the config; every error names the field it is about.
func (c *Config) Validate() error {
	var errs configcheck.Problems
	if c.Listen == "" {
		errs.Add("listen", "required (e.g. \":9400\")")
	} else if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs.Add("listen", "%v", err)
	}
	if _, _, err := net.SplitHostPort(c.Admin); err != nil {
		errs.Add("admin", "%v", err)
	}
	if c.DrainDelay < 0 {
		errs.Add("drain_delay", "must not be negative")
	}
	if c.Issuer == "" {
		errs.Add("issuer", "required (e.g. \"http://localhost:9400\")")
	} else if u, err := url.Parse(c.Issuer); err != nil {
		errs.Add("issuer", "%v", err)
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		errs.Add("issuer", "%q must be an http(s) URL without query or fragment", c.Issuer)
	} else if strings.HasSuffix(c.Issuer, "/") {
		errs.Add("issuer", "%q must not end with a slash", c.Issuer)
	} else if u.Path != "" {
		errs.Add("issuer", "%q: an issuer with a path is not supported by the demo provider", c.Issuer)
	}

	if c.API.Audience == "" {
		errs.Add("api.audience", "required (e.g. \"orders-api\")")
	}
	if len(c.API.Scopes) == 0 {
		errs.Add("api.scopes", "at least one scope is required")
	}
	apiScopes := map[string]bool{}
	for i, s := range c.API.Scopes {
		field := fmt.Sprintf("api.scopes[%d].name", i)
		switch {
		case !validScopeToken(s.Name):
			errs.Add(field, "%q is not a valid scope token (RFC 6749 §3.3)", s.Name)
		case reservedScope(s.Name):
			errs.Add(field, "%q is an OpenID Connect scope, not an API scope", s.Name)
		case apiScopes[s.Name]:
			errs.Add(field, "duplicate scope %q", s.Name)
		}
		apiScopes[s.Name] = true
	}

	if len(c.Clients) == 0 {
		errs.Add("clients", "at least one client is required")
	}
	clientIDs := map[string]bool{}
	for i, cl := range c.Clients {
		p := fmt.Sprintf("clients[%d]", i)
		checkKey(&errs, p+".id", "client id", cl.ID, clientIDs)
		if cl.Public && cl.Secret != "" {
			errs.Add(p+".secret", "a public client has no secret")
		}
		if !cl.Public && cl.Secret == "" {
			errs.Add(p+".secret", "required for a confidential client (or set public: true)")
		}
		for j, s := range cl.Scopes {
			if !apiScopes[s] {
				errs.Add(fmt.Sprintf("%s.scopes[%d]", p, j), "%q is not one of api.scopes", s)
			}
		}
		for j, g := range cl.GrantTypes {
			f := fmt.Sprintf("%s.grant_types[%d]", p, j)
			switch g {
			case GrantAuthorizationCode, GrantRefreshToken:
			case GrantClientCredentials:
				if cl.Public {
					errs.Add(f, "a public client cannot use client_credentials")
				}
			default:
				errs.Add(f, "%q: want authorization_code, refresh_token or client_credentials", g)
			}
		}
		switch cl.AccessTokenFormat {
		case "", TokenFormatJWT, TokenFormatOpaque:
		default:
			errs.Add(p+".access_token_format", "%q: want jwt or opaque", cl.AccessTokenFormat)
		}
		hasCode := slices.Contains(cl.GrantTypes, GrantAuthorizationCode)
		if hasCode && len(cl.RedirectURIs) == 0 {
			errs.Add(p+".redirect_uris", "required for the authorization_code grant")
		}
		if !hasCode && len(cl.RedirectURIs) > 0 {
			errs.Add(p+".redirect_uris", "only used by the authorization_code grant, which the client does not have")
		}
		if cl.Public && !hasCode {
			errs.Add(p+".grant_types", "a public client needs authorization_code")
		}
		for j, r := range cl.RedirectURIs {
			if err := validateRedirectURI(r, cl.Public); err != nil {
				errs.Add(fmt.Sprintf("%s.redirect_uris[%d]", p, j), "%v", err)
			}
		}
	}

	usernames := map[string]bool{}
	for i, u := range c.Users {
		p := fmt.Sprintf("users[%d]", i)
		checkKey(&errs, p+".username", "username", u.Username, usernames)
		if u.Password == "" {
			errs.Add(p+".password", "required")
		}
		if u.SecondFactor != "" && (len(u.SecondFactor) < 6 || strings.Trim(u.SecondFactor, "0123456789") != "") {
			errs.Add(p+".second_factor", "a code of at least 6 digits (or none)")
		}
		for j, s := range u.Scopes {
			if !apiScopes[s] {
				errs.Add(fmt.Sprintf("%s.scopes[%d]", p, j), "%q is not one of api.scopes", s)
			}
		}
	}

	if c.Tokens.AccessTokenLifetime < 0 {
		errs.Add("tokens.access_token_lifetime", "must be positive")
	}
	if c.Tokens.RefreshTokenLifetime < 0 {
		errs.Add("tokens.refresh_token_lifetime", "must be positive")
	}
	if c.Tokens.IDTokenLifetime < 0 {
		errs.Add("tokens.id_token_lifetime", "must be positive")
	}
	switch c.Keys.Algorithm {
	case "RS256":
		if c.Keys.RSABits < 2048 {
			errs.Add("keys.rsa_bits", "%d: at least 2048", c.Keys.RSABits)
		}
	case "ES256", "EdDSA":
		if c.Keys.RSABits != 0 {
			errs.Add("keys.rsa_bits", "only for RS256")
		}
	default:
		errs.Add("keys.algorithm", "%q: want RS256, ES256 or EdDSA", c.Keys.Algorithm)
	}
	switch c.Keys.Storage {
	case "memory":
		if c.Keys.File != "" {
			errs.Add("keys.file", "only used with storage: file")
		}
	case "file":
		if c.Keys.File == "" {
			errs.Add("keys.file", "required with storage: file")
		}
	default:
		errs.Add("keys.storage", "%q: want memory or file", c.Keys.Storage)
	}
	return errs.Err()
}

func validateRedirectURI(raw string, public bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Fragment != "" {
		return fmt.Errorf("%q: a redirect URI has no fragment (RFC 6749 §3.1.2)", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: want an http(s) URL", raw)
	}
	if public && u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%q: a public client's http redirect must be a loopback address (RFC 8252 §7.3)", raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validScopeToken reports whether s is a scope-token: 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < 0x21 || r == 0x22 || r == 0x5c || r > 0x7e {
			return false
		}
	}
	return true
}

// oidcScopes are the OpenID Connect scopes the provider understands besides the API's.
var oidcScopes = []string{"openid", "profile", "email", "address", "phone", "offline_access"}

func reservedScope(s string) bool { return slices.Contains(oidcScopes, s) }

// maxTokenLifetime is the longest a signed JWT stays valid: an old public key must stay
// published at least that long after rotation.
func (c *Config) maxTokenLifetime() time.Duration {
	return max(c.Tokens.AccessTokenLifetime, c.Tokens.IDTokenLifetime)
}

// checkKey reports a key (a client id, a username) that is missing or already in seen.
func checkKey(errs *configcheck.Problems, field, what, key string, seen map[string]bool) {
	if key == "" {
		errs.Add(field, "required")
	} else if seen[key] {
		errs.Add(field, "duplicate %s %q", what, key)
	}
	seen[key] = true
}
