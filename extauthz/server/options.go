package server

import (
	"github.com/scopegate/scopegate/extauthz/check"
	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/policy/remote"
	"github.com/scopegate/scopegate/extauthz/token"
)

// The config, compiled once by config.Load, becomes each runtime package's own Options here
// and nowhere else: those packages never import extauthz/config.

// tokenIssuer is what the verifier needs of issuers[]: the rules its tokens must meet.
func tokenIssuer(c *config.Issuer) token.Issuer {
	is := token.Issuer{Name: c.Name, Issuer: c.Issuer, Audiences: c.Audiences, Algorithms: c.Algorithms,
		ScopeClaims: c.ScopeClaims, ClientIDClaims: c.ClientIDClaims, RequireTyp: c.RequireTyp, Leeway: c.Leeway,
		FetchTimeout: c.FetchTimeout, RequireBinding: c.RequireBinding}
	if in := c.Introspection; in != nil {
		is.Introspection = &token.Introspection{ClientID: in.ClientID, TokenPrefix: in.TokenPrefix,
			IntrospectJWS: in.IntrospectJWS, AllowMissingAudience: in.AllowMissingAudience,
			CacheTTL: in.CacheTTL, NegativeCacheTTL: in.NegativeCacheTTL}
	}
	return is
}

// CheckHeaders is headers: the names of the identity headers the Check service sends upstream.
func CheckHeaders(h config.Headers) check.Headers {
	return check.Headers{Subject: h.Subject, ClientID: h.ClientID, Scopes: h.Scopes, Issuer: h.Issuer}
}

// PolicySigning is a signing block (policy.signing or policy.bundle.signing, whose key file
// field names it in errors) as the policy engine takes it: the key the config read; nil for
// nil.
func PolicySigning(s *config.Signing, field string) *policy.Signing {
	if s == nil {
		return nil
	}
	return &policy.Signing{PublicKey: s.PublicKey, KeyID: s.KeyID, Scope: s.Scope, Field: field, File: s.PublicKeyFile}
}

// policyBundle is policy.bundle as the bundle source takes it.
func policyBundle(b *config.PolicyBundle) remote.Bundle {
	cr := b.Credentials
	return remote.Bundle{URL: b.URL, MinDelay: b.Polling.MinDelay, MaxDelay: b.Polling.MaxDelay,
		Signing: PolicySigning(b.Signing, "policy.bundle.signing.public_key_file"), PersistDir: b.PersistDir,
		BearerTokenFile: cr.BearerTokenFile, ClientCertFile: cr.ClientCertFile, ClientKeyFile: cr.ClientKeyFile, CAFile: cr.CAFile}
}
