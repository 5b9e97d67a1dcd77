// Package config is the authz service's YAML configuration: its shape, defaults and
// validation. Load compiles a file once into a ready value: defaults filled, relative paths
// resolved against the file's folder, every field checked, and the keys and secrets it names
// read (the runtime packages never read them again, nor import this package: the wiring in
// extauthz/server turns a Config into their Options).
package config

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/scopegate/scopegate/internal/certreload"
	"github.com/scopegate/scopegate/internal/configcheck"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/oauth"
	"github.com/scopegate/scopegate/internal/tracing"
	"github.com/scopegate/scopegate/internal/yamlfile"
)

// UnixPrefix marks a listen address that is a Unix socket path (unix:///run/authz.sock).
const UnixPrefix = "unix://"

// Config is the file users write for `scopegate authz`.
type Config struct {
	// Listen is host:port, or unix:///path for a Unix socket (sidecar deployments).
	Listen string `yaml:"listen"`
	// SocketGroup, with a Unix socket, lets this group read and write it (mode 0660); without
	// it the socket is the owner's only (0600).
	SocketGroup string `yaml:"socket_group"`
	// TLS serves gRPC (Check and health) over TLS; with client_ca_file, mutual TLS.
	TLS   *ServerTLS `yaml:"tls"`
	Admin string     `yaml:"admin"`
	// AdminTLS serves the admin HTTP endpoints over TLS (same shape as TLS).
	AdminTLS        *certreload.Files `yaml:"admin_tls"`
	LogLevel        string            `yaml:"log_level"`
	ShutdownTimeout time.Duration     `yaml:"shutdown_timeout"`
	Issuers         []Issuer          `yaml:"issuers"`
	Headers         Headers           `yaml:"headers"`
	Bearer          Bearer            `yaml:"bearer"`
	TokenCache      TokenCache        `yaml:"token_cache"`
	Policy          Policy            `yaml:"policy"`
	DecisionLog     DecisionLog       `yaml:"decision_log"`
	// GRPCReflection serves gRPC server reflection on the listen port (for grpcurl). Off by
	// default: it tells anyone who can reach the port what it serves.
	GRPCReflection bool `yaml:"grpc_reflection"`
	// DrainDelay is how long, after SIGTERM, authz keeps serving Checks with gRPC health and
	// /readyz saying not-serving, so that Envoy and Kubernetes move traffic away before the
	// listener closes (default 5s; 0s stops at once).
	DrainDelay *time.Duration `yaml:"drain_delay"`

	// Sender-constrained tokens (RFC 9449 DPoP): a token bound to a key (cnf.jkt) is accepted
	// only with the DPoP scheme and a proof signed by that key; see README.
	DPoPAlgorithms []string `yaml:"dpop_algorithms"`
	// DPoPNonce makes every proof carry a server nonce (RFC 9449 §8), stateless and keyed by
	// DPoPNonceKeyFile so every replica accepts every other's.
	DPoPNonce        bool   `yaml:"dpop_nonce"`
	DPoPNonceKeyFile string `yaml:"dpop_nonce_key_file"`
	// DPoPNonceKey is DPoPNonceKeyFile's content less surrounding whitespace, read by Validate.
	DPoPNonceKey []byte `yaml:"-" json:"-"`
	// DPoPIATWindow is how far a proof's iat may be from now (default 60s).
	DPoPIATWindow time.Duration `yaml:"dpop_iat_window"`
	// DPoPReplayCacheEntries bounds the proof replay cache (default 200000 per generation).
	DPoPReplayCacheEntries int `yaml:"dpop_replay_cache_entries"`
	// DPoPReplayEntriesPerKey is one proof key's share of a generation (default a twentieth
	// of dpop_replay_cache_entries), so the holder of one bound token can't fill the cache
	// for everyone else.
	DPoPReplayEntriesPerKey int `yaml:"dpop_replay_entries_per_key"`
	// ExternalBaseURL is the scheme and authority clients use (https://api.example.com), for
	// checking a proof's htu when another proxy in front of Envoy rewrites them; empty means
	// the request's own :scheme and :authority.
	ExternalBaseURL string `yaml:"external_base_url"`
	// Tracing is OpenTelemetry (off unless tracing.otlp_endpoint is set).
	Tracing tracing.Config `yaml:"tracing"`
	// SharedState, when set, keeps DPoP replay and introspection answers in a Redis/Valkey
	// store every replica shares (sharedstate.go); unset, each replica has its own.
	SharedState *SharedState `yaml:"shared_state"`

	// Mesh mode (see routes.go): the route table authz matches a request against when it
	// carries no route context extensions, as behind Istio.
	RoutesFile string        `yaml:"routes_file"`
	Routes     *InlineRoutes `yaml:"routes"`
	// Unmatched is what a request that carries no route context extensions and matches no
	// route gets: "deny" (403, no_route; the default with a route table) or "token_only"
	// (any valid token passes, the policy sees an empty route; the default without one).
	Unmatched string `yaml:"unmatched"`
}

// ServerTLS is the gRPC port's TLS: the certificate, key and client CA files, and (mutual
// TLS) which client identities are served.
type ServerTLS struct {
	certreload.Files `yaml:",inline"`
	// ClientURISANs, when set, admits only a client certificate carrying one of these URI
	// SANs (exactly, e.g. spiffe://example.org/authz-client); unset, any certificate from
	// client_ca_file is served. The handshake of any other is refused.
	ClientURISANs []string `yaml:"client_uri_sans"`
}

// Issuer is one trusted token issuer and how its tokens are checked.
type Issuer struct {
	Name      string   `yaml:"name"`
	Issuer    string   `yaml:"issuer"`
	Discovery bool     `yaml:"discovery"`
	JWKSURI   string   `yaml:"jwks_uri"`
	JWKSFile  string   `yaml:"jwks_file"`
	Audiences []string `yaml:"audiences"`
	// Algorithms is the allow-list of JWS algorithms; asymmetric only.
	Algorithms     []string `yaml:"algorithms"`
	ScopeClaims    []string `yaml:"scope_claims"`
	ClientIDClaims []string `yaml:"client_id_claims"`
	RequireTyp     string   `yaml:"require_typ"`
	// Leeway is the clock skew allowed on exp, nbf and iat: SetLeeway from the file (a
	// pointer, so that an explicit 0 is not taken for "unset"), 30s when absent.
	Leeway    time.Duration  `yaml:"-"`
	SetLeeway *time.Duration `yaml:"leeway"`
	// RefreshInterval is how often the JWKS is fetched in the background.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// UnknownKIDInterval is the least time between two refreshes triggered by a token whose kid
	// is not in the key set (so a flood of made-up kids can't hammer the IdP).
	UnknownKIDInterval time.Duration `yaml:"unknown_kid_interval"`
	FetchTimeout       time.Duration `yaml:"fetch_timeout"`
	MaxJWKSBytes       int64         `yaml:"max_jwks_bytes"`
	// RequireBinding refuses this issuer's tokens unless they are sender-constrained (DPoP
	// or certificate-bound).
	RequireBinding bool `yaml:"require_binding"`
	// Introspection, when set, accepts this issuer's opaque tokens by RFC 7662 introspection.
	Introspection *Introspection `yaml:"introspection"`
}

// Introspection is how an issuer's opaque access tokens are checked (RFC 7662).
type Introspection struct {
	// Endpoint is the introspection endpoint; with discovery: true and no endpoint, the
	// discovery document's introspection_endpoint.
	Endpoint string `yaml:"endpoint"`
	// ClientID and the secret in ClientSecretFile authenticate scopegate to the endpoint
	// (client_secret_basic).
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// ClientSecret is ClientSecretFile's content, read by Validate.
	ClientSecret string `yaml:"-" json:"-"`
	// KeyFile, instead of ClientSecretFile, authenticates with private_key_jwt (RFC 7523): a
	// PEM private key (PKCS#8, PKCS#1 RSA or SEC 1 EC); KeyID is sent as the assertion's kid.
	KeyFile string `yaml:"key_file"`
	KeyID   string `yaml:"key_id"`
	// ClientKey is KeyFile's private key, read by Validate.
	ClientKey crypto.Signer `yaml:"-" json:"-"`
	// CacheTTL: a positive answer is reused until min(exp, now + cache_ttl) (default 60s).
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// NegativeCacheTTL: an inactive (or refused) answer is reused this long (default 5s).
	NegativeCacheTTL time.Duration `yaml:"negative_cache_ttl"`
	// TokenPrefix routes opaque tokens between several introspecting issuers: a token goes
	// to the first introspecting issuer, in file order, whose prefix it starts with; an
	// issuer without a prefix takes every token (so it must come last).
	TokenPrefix string `yaml:"token_prefix"`
	// JWTResponse asks for RFC 9701 signed responses (application/token-introspection+jwt),
	// verified with the issuer's keys (so the issuer needs a key source); an unsigned answer
	// is then refused.
	JWTResponse bool `yaml:"jwt_response"`
	// IntrospectJWS sends a JWS that this issuer's keys fail to verify (unknown kid, no key
	// for its algorithm, bad signature) to introspection instead of refusing it, once its
	// claims pass every local check (iss, aud, exp, typ, ...). Off by default.
	IntrospectJWS bool `yaml:"introspect_jws"`
	// MaxConcurrent bounds the calls to the endpoint in flight at once (default 64): a new
	// token beyond it gets 503 with Retry-After at once, rather than one more call.
	MaxConcurrent int `yaml:"max_concurrent"`
	// AllowMissingAudience accepts an answer without aud (some providers never send it);
	// by default such an answer is refused, since nothing says the token is meant for us.
	AllowMissingAudience bool `yaml:"allow_missing_audience"`
}

// Introspecting reports whether the issuer accepts opaque tokens by introspection.
func (is *Issuer) Introspecting() bool { return is.Introspection != nil }

// HasKeys reports whether the issuer verifies JWTs (it has a key source).
func (is *Issuer) HasKeys() bool { return is.Discovery || is.JWKSURI != "" || is.JWKSFile != "" }

// Headers names the identity headers sent upstream on allow; an empty name turns one off.
type Headers struct {
	Subject  string `yaml:"subject"`
	ClientID string `yaml:"client_id"`
	Scopes   string `yaml:"scopes"`
	Issuer   string `yaml:"issuer"`
}

// Bearer bounds what the token front door accepts.
type Bearer struct {
	MaxTokenBytes int `yaml:"max_token_bytes"`
}

// TokenCache bounds the verified-token cache.
type TokenCache struct {
	// MaxEntries bounds the cache (default 100000); 0 turns it off. A pointer, so that an
	// explicit 0 is not taken for "unset".
	MaxEntries *int `yaml:"max_entries"`
	// MaxNegativeEntries bounds the refusals kept (introspection: inactive or refused
	// answers, for negative_cache_ttl) in a store of their own (default 10000; 0: none kept),
	// so junk tokens never evict a valid answer.
	MaxNegativeEntries *int `yaml:"max_negative_entries"`
}

// Policy is the Rego policy evaluated after a token is verified.
type Policy struct {
	// Path is a directory of .rego and data files, or an OPA bundle (.tar.gz); empty means the
	// default scope policy built into the binary.
	Path  string `yaml:"path"`
	Query string `yaml:"query"`
	Watch bool   `yaml:"watch"`
	// Shadow evaluates and logs every policy decision but lets policy denials (and policy
	// errors) through: for rolling out rules. Token failures (400, 401, 503) are still denied.
	Shadow      bool          `yaml:"shadow"`
	EvalTimeout time.Duration `yaml:"eval_timeout"`
	// ErrorStatus is the HTTP status of a deny caused by a policy runtime error.
	ErrorStatus int `yaml:"error_status"`
	// RunTests runs the policy's own *_test.rego before a reload goes live.
	RunTests *bool `yaml:"run_tests"`
	// Signing verifies a signed OPA bundle (`opa build --signing-key`). Set, every revision
	// must be signed by this key; unset, a signed bundle is refused.
	Signing *Signing `yaml:"signing"`
	// Bundle pulls the policy from a bundle server instead of Path (see bundle.go).
	Bundle *PolicyBundle `yaml:"bundle"`
}

// DefaultKeyID is the key_id of policy.signing and policy.bundle.signing when none is given.
// OPA's rule applies: the configured key verifies whatever kid the signature names.
const DefaultKeyID = "default"

// Signing is the key that signs the policy bundle (policy.signing, policy.bundle.signing).
type Signing struct {
	// PublicKeyFile is the PEM public key (RSA: RS256; EC: ES256/384/512 by curve; Ed25519).
	PublicKeyFile string `yaml:"public_key_file"`
	// KeyID names the key (default "default"); it is used whatever kid the signature names,
	// as OPA does with a configured key id.
	KeyID string `yaml:"key_id"`
	// Scope must equal the "scope" claim of the bundle's signature (set at signing with
	// opa build --claims-file); empty means the signature carries no scope.
	Scope string `yaml:"scope"`
	// PublicKey is PublicKeyFile's content (PEM), read by Validate.
	PublicKey []byte `yaml:"-" json:"-"`
}

// read reads the public key file into PublicKey; field names it in the problem.
func (s *Signing) read(errs *configcheck.Problems, field string) {
	if _, err := os.Stat(s.PublicKeyFile); err != nil {
		errs.Add(field, "%v", err)
	} else if s.PublicKey, err = os.ReadFile(s.PublicKeyFile); err != nil {
		errs.Add(field, "%v", err)
	}
}

// readKey reads a file of at least 32 random bytes (less surrounding whitespace): a key every
// replica shares. Nil, with the problem recorded under field, when it can't be read or is short.
func readKey(errs *configcheck.Problems, field, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		errs.Add(field, "%v", err)
		return nil
	}
	k := []byte(strings.TrimSpace(string(b)))
	if len(k) < 32 {
		errs.Add(field, "%s holds %d bytes: at least 32 random bytes are required", path, len(k))
		return nil
	}
	return k
}

// DecisionLog configures the one-JSON-line-per-decision log.
type DecisionLog struct {
	// Output is "stdout", "stderr", a file path, or "off".
	Output string `yaml:"output"`
	// SampleRate is the fraction of allowed decisions logged (denials are always logged).
	SampleRate *float64 `yaml:"sample_rate"`
	// IncludeInput adds the policy input to the lines of verified requests, for replaying
	// a candidate policy (`scopegate policy impact`): every refusal's line, and
	// InputSampleRate of the allowed ones. Default true.
	IncludeInput *bool `yaml:"include_input"`
	// InputSampleRate is the fraction of logged allowed decisions whose line carries the
	// input (default 0.1: the input costs more than the rest of a warm Check; see README).
	InputSampleRate *float64 `yaml:"input_sample_rate"`
	// HiddenHeaders are request headers the input never holds, added to the default list
	// (authorization, cookie, proxy-authorization, dpop); matched without regard to case.
	HiddenHeaders []string `yaml:"hidden_headers"`
}

// DefaultInputSampleRate is decision_log.input_sample_rate when the file sets none.
const DefaultInputSampleRate = 0.1

// DefaultDrainDelay is drain_delay when the file sets none.
const DefaultDrainDelay = 5 * time.Second

// validHeaderName reports whether h is an HTTP field name (RFC 9110 §5.1: a token).
func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// DefaultAlgorithms is the algorithm allow-list when an issuer names none.
var DefaultAlgorithms = []string{"RS256", "ES256", "EdDSA", "PS256"}

// Load reads, defaults and validates a config file. Relative paths in it are taken relative
// to the file's folder, and the keys and secrets it names are read (see Validate).
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := parse(raw, configcheck.DirOf(path))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML (unknown fields are errors), fills defaults and validates. Relative
// paths are taken as they are (relative to the working directory): Load resolves them
// against the file's folder.
func Parse(raw []byte) (*Config, error) { return parse(raw, "") }

func parse(raw []byte, dir configcheck.Dir) (*Config, error) {
	var c Config
	// An empty file is valid: every field has a default (issuers aside, which Validate names).
	if err := yamlfile.Decode(raw, &c); err != nil && !errors.Is(err, yamlfile.ErrEmpty) {
		return nil, err
	}
	c.applyDefaults()
	c.resolvePaths(dir)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Default is a config with every default filled in and no issuers (so not a valid one):
// what `scopegate check` uses when it runs without a config file.
func Default() *Config {
	var c Config
	c.applyDefaults()
	return &c
}

// resolvePaths makes every relative path the file names relative to dir, its folder.
func (c *Config) resolvePaths(dir configcheck.Dir) {
	if dir == "" {
		return
	}
	for _, f := range []*certreload.Files{tlsFiles(c.TLS), c.AdminTLS} {
		if f != nil {
			dir.Resolve(&f.CertFile, &f.KeyFile, &f.ClientCAFile)
		}
	}
	for i := range c.Issuers {
		is := &c.Issuers[i]
		dir.Resolve(&is.JWKSFile)
		if in := is.Introspection; in != nil {
			dir.Resolve(&in.ClientSecretFile, &in.KeyFile)
		}
	}
	dir.Resolve(&c.Policy.Path, &c.DPoPNonceKeyFile, &c.RoutesFile)
	if s := c.Policy.Signing; s != nil {
		dir.Resolve(&s.PublicKeyFile)
	}
	if b := c.Policy.Bundle; b != nil {
		dir.Resolve(&b.PersistDir, &b.Credentials.BearerTokenFile, &b.Credentials.ClientCertFile,
			&b.Credentials.ClientKeyFile, &b.Credentials.CAFile)
		if s := b.Signing; s != nil {
			dir.Resolve(&s.PublicKeyFile)
		}
	}
	switch c.DecisionLog.Output {
	case "stdout", "stderr", "off":
	default:
		dir.Resolve(&c.DecisionLog.Output)
	}
	if s := c.SharedState; s != nil {
		dir.Resolve(&s.KeyFile)
		if r := s.Redis; r != nil {
			dir.Resolve(&r.PasswordFile)
			if t := r.TLS; t != nil {
				dir.Resolve(&t.CAFile, &t.CertFile, &t.KeyFile)
			}
		}
	}
}

func tlsFiles(t *ServerTLS) *certreload.Files {
	if t == nil {
		return nil
	}
	return &t.Files
}

func (c *Config) applyDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Listen, ":9191")
	def(&c.Admin, ":9092")
	def(&c.LogLevel, "info")
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 15 * time.Second
	}
	if c.DrainDelay == nil {
		d := DefaultDrainDelay
		c.DrainDelay = &d
	}
	def(&c.Headers.Subject, contract.HeaderSubject)
	def(&c.Headers.ClientID, contract.HeaderClientID)
	def(&c.Headers.Scopes, contract.HeaderScopes)
	def(&c.Headers.Issuer, contract.HeaderIssuer)
	if c.Bearer.MaxTokenBytes == 0 {
		c.Bearer.MaxTokenBytes = 8 << 10
	}
	if c.TokenCache.MaxEntries == nil {
		n := 100000
		c.TokenCache.MaxEntries = &n
	}
	if c.TokenCache.MaxNegativeEntries == nil {
		n := 10000
		c.TokenCache.MaxNegativeEntries = &n
	}
	def(&c.Policy.Query, "data.scopegate.authz.decision")
	if c.Policy.EvalTimeout == 0 {
		c.Policy.EvalTimeout = 100 * time.Millisecond
	}
	if c.Policy.ErrorStatus == 0 {
		c.Policy.ErrorStatus = 500
	}
	if c.Policy.RunTests == nil {
		t := true
		c.Policy.RunTests = &t
	}
	if c.DPoPAlgorithms == nil {
		c.DPoPAlgorithms = contract.DPoPAlgorithms()
	}
	if c.DPoPIATWindow == 0 {
		c.DPoPIATWindow = oauth.DefaultIATWindow
	}
	if c.DPoPReplayCacheEntries == 0 {
		c.DPoPReplayCacheEntries = oauth.DefaultReplayEntries
	}
	if c.DPoPReplayEntriesPerKey == 0 {
		c.DPoPReplayEntriesPerKey = oauth.DefaultReplayEntriesPerKey(c.DPoPReplayCacheEntries)
	}
	if c.Policy.Signing != nil {
		def(&c.Policy.Signing.KeyID, DefaultKeyID)
	}
	if c.Policy.Bundle != nil {
		c.Policy.Bundle.applyDefaults()
	}
	if c.SharedState != nil {
		c.SharedState.applyDefaults()
	}
	c.applyRouteDefaults()
	def(&c.DecisionLog.Output, "stdout")
	if c.DecisionLog.IncludeInput == nil {
		t := true
		c.DecisionLog.IncludeInput = &t
	}
	if c.DecisionLog.SampleRate == nil {
		one := 1.0
		c.DecisionLog.SampleRate = &one
	}
	if c.DecisionLog.InputSampleRate == nil {
		r := DefaultInputSampleRate
		c.DecisionLog.InputSampleRate = &r
	}
	for i := range c.Issuers {
		is := &c.Issuers[i]
		if len(is.Algorithms) == 0 {
			is.Algorithms = append([]string(nil), DefaultAlgorithms...)
		}
		if len(is.ScopeClaims) == 0 {
			is.ScopeClaims = []string{"scope", "scp"}
		}
		if len(is.ClientIDClaims) == 0 {
			is.ClientIDClaims = []string{"client_id", "azp", "cid"}
		}
		switch {
		case is.SetLeeway != nil:
			is.Leeway = *is.SetLeeway
		case is.Leeway == 0:
			is.Leeway = 30 * time.Second
		}
		if is.RefreshInterval == 0 {
			is.RefreshInterval = 15 * time.Minute
		}
		if is.UnknownKIDInterval == 0 {
			is.UnknownKIDInterval = 10 * time.Second
		}
		if is.FetchTimeout == 0 {
			is.FetchTimeout = 5 * time.Second
		}
		if is.MaxJWKSBytes == 0 {
			is.MaxJWKSBytes = 1 << 20
		}
		if in := is.Introspection; in != nil {
			if in.CacheTTL == 0 {
				in.CacheTTL = 60 * time.Second
			}
			if in.NegativeCacheTTL == 0 {
				in.NegativeCacheTTL = 5 * time.Second
			}
			if in.MaxConcurrent == 0 {
				in.MaxConcurrent = 64
			}
		}
	}
}

// SocketPath is the Unix socket path when Listen is unix:///path.
func (c *Config) SocketPath() (string, bool) {
	return strings.CutPrefix(c.Listen, UnixPrefix)
}

// Validate checks every field; the error names the field at fault. It also reads the keys
// and secrets the config names (dpop_nonce_key_file, shared_state.key_file, the redis CA,
// introspection credentials, policy signing keys) into the fields that hold them, so that
// nothing reads them again.
func (c *Config) Validate() error {
	var errs configcheck.Problems
	if path, ok := c.SocketPath(); ok {
		if !strings.HasPrefix(path, "/") {
			errs.Add("listen", "%q: a Unix socket needs an absolute path (unix:///run/scopegate/authz.sock)", c.Listen)
		}
	} else {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			errs.Add("listen", "%q is not host:port or unix:///path", c.Listen)
		}
		if c.SocketGroup != "" {
			errs.Add("socket_group", "applies to a Unix socket listen address only (listen: unix:///path)")
		}
	}
	if _, _, err := net.SplitHostPort(c.Admin); err != nil {
		errs.Add("admin", "%q is not host:port", c.Admin)
	}
	if c.TLS != nil {
		errs.Join(c.TLS.Validate("tls"))
		if len(c.TLS.ClientURISANs) > 0 && c.TLS.ClientCAFile == "" {
			errs.Add("tls.client_uri_sans", "needs client_ca_file (without client certificates there is no identity to check)")
		}
		for i, u := range c.TLS.ClientURISANs {
			if p, err := url.Parse(u); err != nil || p.Scheme == "" || p.Opaque != "" && p.Scheme != "urn" || strings.ContainsAny(u, " \t") {
				errs.Add(fmt.Sprintf("tls.client_uri_sans[%d]", i), "%q is not an absolute URI (such as spiffe://example.org/authz-client)", u)
			}
		}
	}
	if c.AdminTLS != nil {
		errs.Join(c.AdminTLS.Validate("admin_tls"))
	}
	if c.ShutdownTimeout < 0 {
		errs.Add("shutdown_timeout", "must not be negative")
	}
	if *c.DrainDelay < 0 {
		errs.Add("drain_delay", "must not be negative")
	}
	if len(c.Issuers) == 0 {
		errs.Add("issuers", "at least one issuer is required")
	}
	names, issuerURLs := map[string]bool{}, map[string]bool{}
	for i := range c.Issuers {
		is := &c.Issuers[i]
		f := fmt.Sprintf("issuers[%d]", i)
		if is.Name != "" {
			f = fmt.Sprintf("issuers[%d] (%s)", i, is.Name)
		}
		switch {
		case is.Name == "":
			errs.Add(f+".name", "required")
		case names[is.Name]:
			errs.Add(f+".name", "duplicate issuer name %q", is.Name)
		}
		names[is.Name] = true
		switch {
		case is.Issuer == "":
			errs.Add(f+".issuer", "required (the exact iss value of its tokens)")
		case issuerURLs[is.Issuer]:
			errs.Add(f+".issuer", "duplicate issuer %q", is.Issuer)
		}
		issuerURLs[is.Issuer] = true
		sources := 0
		for _, set := range []bool{is.Discovery, is.JWKSURI != "", is.JWKSFile != ""} {
			if set {
				sources++
			}
		}
		switch {
		case sources == 0 && is.Introspection != nil:
			// Introspection only: validateIntrospection requires the endpoint.
		case sources != 1:
			errs.Add(f, "exactly one of discovery: true, jwks_uri or jwks_file is required (or, for opaque tokens only, introspection with an endpoint)")
		}
		if in := is.Introspection; in != nil {
			if in.Endpoint == "" && !is.Discovery {
				errs.Add(f+".introspection.endpoint", "required without discovery: true")
			}
			if in.JWTResponse && sources == 0 {
				errs.Add(f+".introspection.jwt_response", "needs the issuer's keys (discovery: true, jwks_uri or jwks_file) to verify the signed responses")
			}
			validateIntrospection(&errs, f+".introspection", in)
		}
		if is.Discovery {
			if u, err := url.Parse(is.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				errs.Add(f+".issuer", "discovery needs an http(s) issuer URL, got %q", is.Issuer)
			}
		}
		if is.JWKSURI != "" {
			if u, err := url.Parse(is.JWKSURI); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				errs.Add(f+".jwks_uri", "want an http(s) URL, got %q", is.JWKSURI)
			}
		}
		if len(is.Audiences) == 0 {
			errs.Add(f+".audiences", "at least one audience is required")
		}
		for _, a := range is.Audiences {
			if strings.TrimSpace(a) == "" {
				errs.Add(f+".audiences", "empty audience")
			}
		}
		for _, alg := range is.Algorithms {
			if !oauth.Asymmetric(alg) {
				errs.Add(f+".algorithms", "%q is not allowed: asymmetric JWS algorithms only (RS*, PS*, ES*, EdDSA)", alg)
			}
		}
		for _, claim := range append(append([]string(nil), is.ScopeClaims...), is.ClientIDClaims...) {
			if claim == "" {
				errs.Add(f+".scope_claims/client_id_claims", "empty claim name")
			}
		}
		if is.Leeway < 0 || is.Leeway > 5*time.Minute {
			errs.Add(f+".leeway", "%s is out of range (0 to 5m)", is.Leeway)
		}
		if is.RefreshInterval < time.Second {
			errs.Add(f+".refresh_interval", "%s is too short (at least 1s)", is.RefreshInterval)
		}
		if is.UnknownKIDInterval < 0 {
			errs.Add(f+".unknown_kid_interval", "must not be negative")
		}
		if is.FetchTimeout <= 0 || is.FetchTimeout > time.Minute {
			errs.Add(f+".fetch_timeout", "%s is out of range (above 0, at most 1m)", is.FetchTimeout)
		}
		if is.MaxJWKSBytes < 1024 {
			errs.Add(f+".max_jwks_bytes", "%d is too small (at least 1024)", is.MaxJWKSBytes)
		}
	}
	// Routing of opaque tokens: an introspecting issuer without token_prefix takes every
	// token, so any introspecting issuer after it could never be reached.
	catchAll := ""
	for i := range c.Issuers {
		in := c.Issuers[i].Introspection
		if in == nil {
			continue
		}
		if catchAll != "" {
			errs.Add(fmt.Sprintf("issuers[%d].introspection.token_prefix", i), "issuer %q introspects every opaque token (no token_prefix), so this one would never be asked: give %q a token_prefix or list it first", catchAll, catchAll)
			continue
		}
		if in.TokenPrefix == "" {
			catchAll = c.Issuers[i].Name
		}
	}
	for _, h := range [][2]string{{"headers.subject", c.Headers.Subject}, {"headers.client_id", c.Headers.ClientID},
		{"headers.scopes", c.Headers.Scopes}, {"headers.issuer", c.Headers.Issuer}} {
		if h[1] != strings.ToLower(h[1]) || strings.ContainsAny(h[1], " :\t") {
			errs.Add(h[0], "%q must be a lower-case header name", h[1])
		}
	}
	if c.Bearer.MaxTokenBytes < 256 || c.Bearer.MaxTokenBytes > 1<<20 {
		errs.Add("bearer.max_token_bytes", "%d is out of range (256 to 1048576)", c.Bearer.MaxTokenBytes)
	}
	if *c.TokenCache.MaxEntries < 0 {
		errs.Add("token_cache.max_entries", "must not be negative (0 turns the cache off)")
	}
	if *c.TokenCache.MaxNegativeEntries < 0 {
		errs.Add("token_cache.max_negative_entries", "must not be negative (0 keeps no refusals)")
	}
	if !strings.HasPrefix(c.Policy.Query, "data.") {
		errs.Add("policy.query", "%q must be a data reference such as data.scopegate.authz.decision", c.Policy.Query)
	}
	if c.Policy.EvalTimeout < 0 {
		errs.Add("policy.eval_timeout", "must not be negative")
	}
	if c.Policy.ErrorStatus < 400 || c.Policy.ErrorStatus > 599 {
		errs.Add("policy.error_status", "%d is not an HTTP error status", c.Policy.ErrorStatus)
	}
	if c.Policy.Path != "" {
		if _, err := os.Stat(c.Policy.Path); err != nil {
			errs.Add("policy.path", "%v", err)
		}
	}
	if s := c.Policy.Signing; s != nil {
		if c.Policy.Path == "" {
			errs.Add("policy.signing", "needs policy.path (the built-in policy is not a signed bundle)")
		}
		if s.PublicKeyFile == "" {
			errs.Add("policy.signing.public_key_file", "required")
		} else {
			s.read(&errs, "policy.signing.public_key_file")
		}
	}
	if c.Policy.Bundle != nil {
		c.Policy.Bundle.validate(&c.Policy, &errs)
	}
	if c.SharedState != nil {
		c.SharedState.validate(c, &errs)
	}
	errs.Join(c.Tracing.Validate())
	if r := *c.DecisionLog.SampleRate; r < 0 || r > 1 {
		errs.Add("decision_log.sample_rate", "%v is out of range (0 to 1)", r)
	}
	if r := *c.DecisionLog.InputSampleRate; r < 0 || r > 1 {
		errs.Add("decision_log.input_sample_rate", "%v is out of range (0 to 1)", r)
	}
	for i, h := range c.DecisionLog.HiddenHeaders {
		if !validHeaderName(h) {
			errs.Add(fmt.Sprintf("decision_log.hidden_headers[%d]", i), "%q is not an HTTP header name", h)
		}
	}
	if len(c.DPoPAlgorithms) == 0 {
		errs.Add("dpop_algorithms", "at least one algorithm is required")
	}
	for _, alg := range c.DPoPAlgorithms {
		if !oauth.Asymmetric(alg) {
			errs.Add("dpop_algorithms", "%q is not allowed: asymmetric JWS algorithms only (RS*, PS*, ES*, EdDSA)", alg)
		}
	}
	if c.DPoPIATWindow < time.Second || c.DPoPIATWindow > 10*time.Minute {
		errs.Add("dpop_iat_window", "%s is out of range (1s to 10m)", c.DPoPIATWindow)
	}
	if c.DPoPReplayCacheEntries < 1000 {
		errs.Add("dpop_replay_cache_entries", "%d is too small (at least 1000)", c.DPoPReplayCacheEntries)
	}
	if c.DPoPReplayEntriesPerKey < 10 || c.DPoPReplayEntriesPerKey > c.DPoPReplayCacheEntries {
		errs.Add("dpop_replay_entries_per_key", "%d is out of range (10 to dpop_replay_cache_entries, %d)", c.DPoPReplayEntriesPerKey, c.DPoPReplayCacheEntries)
	}
	if c.DPoPNonceKeyFile != "" {
		if !c.DPoPNonce {
			errs.Add("dpop_nonce_key_file", "set, but dpop_nonce is false")
		}
		c.DPoPNonceKey = readKey(&errs, "dpop_nonce_key_file", c.DPoPNonceKeyFile)
	}
	c.validateRoutes(&errs)
	if c.ExternalBaseURL != "" {
		if u, err := url.Parse(c.ExternalBaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
			u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
			errs.Add("external_base_url", "want scheme://host[:port] with no path or query, got %q", c.ExternalBaseURL)
		}
	}
	return errs.Err()
}

func validateIntrospection(errs *configcheck.Problems, f string, in *Introspection) {
	if in.Endpoint != "" {
		if u, err := url.Parse(in.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			errs.Add(f+".endpoint", "want an http(s) URL without user info, got %q", in.Endpoint)
		}
	}
	if in.ClientID == "" {
		errs.Add(f+".client_id", "required (scopegate's client at the introspection endpoint)")
	}
	switch {
	case in.ClientSecretFile == "" && in.KeyFile == "":
		errs.Add(f+".client_secret_file", "required (a file holding the client secret), or key_file for private_key_jwt")
	case in.ClientSecretFile != "" && in.KeyFile != "":
		errs.Add(f, "client_secret_file and key_file are exclusive: one client authentication method")
	case in.ClientSecretFile != "":
		if _, err := os.Stat(in.ClientSecretFile); err != nil {
			errs.Add(f+".client_secret_file", "%v", err)
		} else if in.ClientSecret, err = readSecret(in.ClientSecretFile); err != nil {
			errs.Add(f+".client_secret_file", "%v", err)
		}
	default:
		var err error
		if in.ClientKey, err = ReadPrivateKey(in.KeyFile); err != nil {
			errs.Add(f+".key_file", "%v", err)
		}
	}
	if in.CacheTTL < 0 || in.CacheTTL > time.Hour {
		errs.Add(f+".cache_ttl", "%s is out of range (up to 1h)", in.CacheTTL)
	}
	if in.NegativeCacheTTL < 0 || in.NegativeCacheTTL > 10*time.Minute {
		errs.Add(f+".negative_cache_ttl", "%s is out of range (up to 10m)", in.NegativeCacheTTL)
	}
	if in.MaxConcurrent < 1 || in.MaxConcurrent > 10000 {
		errs.Add(f+".max_concurrent", "%d is out of range (1 to 10000)", in.MaxConcurrent)
	}
	if strings.ContainsAny(in.TokenPrefix, " \t\r\n") {
		errs.Add(f+".token_prefix", "%q must not contain whitespace", in.TokenPrefix)
	}
}

// readSecret reads an introspection client secret file: its content less surrounding
// whitespace (a trailing newline is usual). The error names the file, never the content.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s: empty", path)
	}
	return s, nil
}

// ReadPrivateKey reads a PEM private key for private_key_jwt: PKCS#8, PKCS#1 (RSA) or SEC 1
// (EC). Errors name the file, never key material.
func ReadPrivateKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not a private key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", path)
	}
	return signer, nil
}
