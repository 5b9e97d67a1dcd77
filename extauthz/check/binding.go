package check

import (
	"context"
	"crypto/subtle"
	"encoding/pem"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/extauthz/bearer"
	"github.com/scopegate/scopegate/extauthz/decisionlog"
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
		return s.deny(rec, 401, reason, denial{status: 401, code: codes.Unauthenticated, errCode: "invalid_token", description: desc, challenge: true, dpop: dpopScheme, resourceMetadata: resourceMetadata(v)})
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
	if id.JKT == "" && id.X5T == "" && (id.RequireBinding || v.Ext[contract.ExtBinding] == contract.BindingRequired) {
		return refuse(contract.ReasonBindingRequired, "this resource requires a sender-constrained (DPoP or certificate-bound) token")
	}
	return nil
}

// checkProof verifies the request's one DPoP proof against the token (ath: its hash).
func (s *Service) checkProof(ctx context.Context, v *policy.View, rec *decisionlog.Record, ath string, id *token.Identity) *authv3.CheckResponse {
	proof, ok := v.Header("dpop")
	if !ok || strings.IndexByte(proof, ',') >= 0 { // repeated headers are joined with ","
		return s.deny(rec, 401, dpop.ReasonInvalidProof, denial{status: 401, code: codes.Unauthenticated, errCode: dpop.ReasonInvalidProof,
			description: "exactly one DPoP proof header is required", challenge: true, dpop: true, resourceMetadata: resourceMetadata(v)})
	}
	err := s.o.DPoP.VerifyContext(ctx, dpop.Request{Proof: proof, Method: v.HTTP.GetMethod(), URI: s.requestURI(v), TokenHash: ath, JKT: id.JKT})
	if err == nil {
		return nil
	}
	e := err.(*dpop.Error)
	switch {
	case e.Unavailable:
		return s.deny(rec, 503, e.Reason, denial{status: 503, code: codes.Unavailable, errCode: "temporarily_unavailable", description: e.Description, retryAfter: "1"})
	case e.TooMany:
		// This key's share of the replay cache is used up until the generation rotates;
		// every other key is unaffected.
		return s.deny(rec, 429, e.Reason, denial{status: 429, code: codes.ResourceExhausted, errCode: "temporarily_unavailable", description: e.Description,
			retryAfter: strconv.Itoa(int(e.RetryAfter.Round(time.Second) / time.Second))})
	case e.Nonce != "":
		// A fresh nonce per response: not a cacheable denial.
		d := denial{status: 401, code: codes.Unauthenticated, errCode: dpop.ReasonUseNonce, description: e.Description, challenge: true, dpop: true, resourceMetadata: resourceMetadata(v),
			extra: []*corev3.HeaderValueOption{header("dpop-nonce", e.Nonce)}}
		rec.Allow, rec.Status, rec.Reason = false, 401, e.Reason
		return buildDenial(d, s.denials.dpopAlgs)
	}
	return s.deny(rec, 401, e.Reason, denial{status: 401, code: codes.Unauthenticated, errCode: dpop.ReasonInvalidProof, description: e.Description, challenge: true, dpop: true, resourceMetadata: resourceMetadata(v)})
}

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
