package check

import (
	"context"
	"crypto/subtle"
	"encoding/pem"
	"errors"
	"net/url"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/scopegate/scopegate/extauthz/bearer"
	"github.com/scopegate/scopegate/extauthz/decisionlog"
	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/extauthz/dpop"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/contract"
	"github.com/scopegate/scopegate/internal/oauth"
)

// checkBinding enforces sender-constrained tokens after the token itself verified: a
// DPoP-bound token (cnf.jkt) only with the DPoP scheme and a valid proof (RFC 9449), a
// certificate-bound token (cnf x5t#S256) only over a connection presenting that client
// certificate (RFC 8705), and no unbound token where the issuer or the route requires
// binding. The proof is checked on every request; it is never cached. nil means go on.
func (s *Service) checkBinding(ctx context.Context, v *policy.View, rec *decisionlog.Record, raw string, scheme bearer.Scheme, id *token.Identity, pt *perToken) *authv3.CheckResponse {
	dpopScheme := scheme == bearer.SchemeDPoP
	refuse := func(reason, desc string) *authv3.CheckResponse {
		return s.deny(rec, challenged(denial.New(denial.InvalidToken, reason, desc), dpopScheme, v.Route.MetadataURL))
	}
	switch {
	case dpopScheme && id.JKT == "":
		return refuse(contract.ReasonNotDPoPBound, "the token is not DPoP-bound: send it with the Bearer scheme")
	case !dpopScheme && id.JKT != "":
		// No downgrade: a bound token without its proof is a stolen token as far as we know.
		return refuse(contract.ReasonDPoPDowngrade, "a DPoP-bound token must be sent with the DPoP scheme and a proof")
	case dpopScheme:
		if resp := s.checkProof(ctx, v, rec, pt.tokenHash(raw), id); resp != nil {
			return resp
		}
	}
	if id.X5T != "" && !certificateMatches(v.Attrs, id.X5T) {
		return refuse(contract.ReasonCertificateMismatch, "the token is bound to another client certificate")
	}
	if id.JKT == "" && id.X5T == "" && (id.RequireBinding || v.Route.BindingRequired) {
		return refuse(contract.ReasonBindingRequired, "this resource requires a sender-constrained (DPoP or certificate-bound) token")
	}
	return nil
}

// checkProof verifies the request's one DPoP proof against the token (ath: its hash).
func (s *Service) checkProof(ctx context.Context, v *policy.View, rec *decisionlog.Record, ath string, id *token.Identity) *authv3.CheckResponse {
	proof, ok := v.Header("dpop")
	if !ok || strings.IndexByte(proof, ',') >= 0 { // repeated headers are joined with ","
		return s.deny(rec, challenged(errOneProof, true, v.Route.MetadataURL))
	}
	err := s.o.DPoP.VerifyContext(ctx, dpop.Request{Proof: proof, Method: v.HTTP.GetMethod(), URI: s.requestURI(v), TokenHash: ath, JKT: id.JKT})
	if err == nil {
		return nil
	}
	var d *denial.Denial
	if !errors.As(err, &d) {
		// The verifier refuses with nothing else; should that change, fail closed, never panic.
		s.o.Logger.Error("DPoP proof verification failed unexpectedly", "error", err)
		return s.deny(rec, errInternal)
	}
	switch d.Kind {
	case denial.Unavailable, denial.TooManyRequests:
		return s.deny(rec, d)
	case denial.UseDPoPNonce:
		// A fresh nonce per response: not a cacheable denial.
		return s.denyNow(rec, challenged(d, true, v.Route.MetadataURL))
	}
	return s.deny(rec, challenged(d, true, v.Route.MetadataURL))
}

// errOneProof refuses a DPoP request without exactly one proof.
var errOneProof = denial.New(denial.InvalidDPoPProof, contract.ReasonInvalidDPoPProof, "exactly one DPoP proof header is required")

// requestURI is the URI a proof's htu must name: scheme, authority and path, without the
// query (RFC 9449 §4.3), from what Envoy reports or the configured external base URL.
func (s *Service) requestURI(v *policy.View) string {
	if s.o.ExternalBaseURL != "" {
		return strings.TrimSuffix(s.o.ExternalBaseURL, "/") + v.Path
	}
	return v.HTTP.GetScheme() + "://" + v.HTTP.GetHost() + v.Path
}

// certificateMatches reports whether the client certificate Envoy forwarded
// (attributes.source.certificate: the URL-encoded PEM, sent with include_peer_certificate)
// has the SHA-256 thumbprint x5t (RFC 8705 §3.1). No certificate or a malformed one never
// matches.
func certificateMatches(attrs *authv3.AttributeContext, x5t string) bool {
	enc := attrs.GetSource().GetCertificate()
	if enc == "" {
		return false
	}
	p, err := url.PathUnescape(enc)
	if err != nil {
		return false
	}
	block, _ := pem.Decode([]byte(p))
	if block == nil || block.Type != "CERTIFICATE" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(oauth.CertificateThumbprint(block.Bytes)), []byte(x5t)) == 1
}
