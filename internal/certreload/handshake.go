package certreload

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/credentials"
)

// Why a client's handshake was refused: the reason label of
// scopegate_tls_handshake_failures_total. A fixed set, never text from the client.
const (
	ReasonNoClientCert     = "no_client_certificate" // mutual TLS, and the client sent none
	ReasonUnknownAuthority = "unknown_authority"     // its certificate is not signed by the client CA
	ReasonExpired          = "expired_certificate"   // its certificate has expired (or is not valid yet)
	ReasonBadCertificate   = "bad_certificate"       // its certificate was refused otherwise (usage, ...)
	ReasonIdentity         = "identity_not_allowed"  // a valid certificate whose URI SANs name no allowed identity
	ReasonProtocolVersion  = "protocol_version"      // it offered only TLS versions we refuse (below 1.2)
	ReasonNoSharedCipher   = "no_shared_cipher"      // no cipher suite or ALPN protocol in common
	ReasonNotTLS           = "not_tls"               // it spoke something else (plaintext HTTP/2, ...)
	ReasonClientRejected   = "client_rejected"       // it refused our certificate (sent an alert): check its trust bundle and the server name
	ReasonAborted          = "aborted"               // it closed or timed out mid-handshake (TCP probes, scanners)
	ReasonOther            = "other"
)

// handshakeLogEvery bounds the refused-handshake log: one line per endpoint and reason per
// period, saying how many went unlogged since. A client retrying in a loop (or a scanner)
// can't flood the log; the counter sees every one.
const handshakeLogEvery = 10 * time.Second

// HandshakeReason classifies a server-side handshake error.
func HandshakeReason(err error) string {
	var (
		unknown   x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
		header    tls.RecordHeaderError
		op        *net.OpError
	)
	msg := err.Error()
	var identity *IdentityError
	switch {
	case errors.As(err, &identity):
		return ReasonIdentity
	case errors.As(err, &unknown):
		return ReasonUnknownAuthority
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return ReasonExpired
	case errors.As(err, &invalid), errors.As(err, &verifyErr):
		return ReasonBadCertificate
	case strings.Contains(msg, "didn't provide a certificate"):
		return ReasonNoClientCert
	case errors.As(err, &header):
		return ReasonNotTLS
	case strings.Contains(msg, "unsupported versions"), strings.Contains(msg, "protocol version not supported"):
		return ReasonProtocolVersion
	case strings.Contains(msg, "no cipher suite supported"), strings.Contains(msg, "unsupported application protocols"),
		strings.Contains(msg, "missing selected ALPN"):
		return ReasonNoSharedCipher
	case errors.As(err, &op) && op.Op == "remote error":
		return ReasonClientRejected
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed), isTimeout(err):
		return ReasonAborted
	}
	return ReasonOther
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// handshakeLog rate-limits the refused-handshake log per reason.
type handshakeLog struct {
	mu      sync.Mutex
	last    map[string]time.Time
	skipped map[string]int
}

// HandshakeFailed counts a refused client handshake and logs it, at most once per reason
// every 10 seconds. Callers that run the handshake themselves call it; Credentials does.
func (r *Reloader) HandshakeFailed(remote net.Addr, err error) {
	reason := HandshakeReason(err)
	// Counted once the line (if any) is out: a reader that sees the count sees the line.
	defer r.o.Metrics.handshakeFailures.WithLabelValues(r.o.Name, reason).Inc()
	now := r.o.Now()
	h := &r.hsLog
	h.mu.Lock()
	if h.last == nil {
		h.last, h.skipped = map[string]time.Time{}, map[string]int{}
	}
	if last, ok := h.last[reason]; ok && now.Sub(last) < handshakeLogEvery {
		h.skipped[reason]++
		h.mu.Unlock()
		return
	}
	skipped := h.skipped[reason]
	h.last[reason], h.skipped[reason] = now, 0
	h.mu.Unlock()
	level := slog.LevelWarn
	if reason == ReasonAborted {
		level = slog.LevelDebug // TCP health probes and port scanners: counted, not shouted
	}
	addr := ""
	if remote != nil {
		addr = remote.String()
	}
	r.log.Log(context.Background(), level, "TLS handshake refused", "reason", reason, "remote", addr, "error", err,
		"unlogged_since_last", skipped)
}

// Credentials are gRPC server credentials serving ServerConfig (the files' current
// certificate and CA for every handshake) that count and log each refused handshake.
func (r *Reloader) Credentials() credentials.TransportCredentials {
	return &countingCreds{TransportCredentials: credentials.NewTLS(r.ServerConfig()), r: r}
}

type countingCreds struct {
	credentials.TransportCredentials
	r *Reloader
}

func (c *countingCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		c.r.HandshakeFailed(conn.RemoteAddr(), err)
	}
	return out, info, err
}

func (c *countingCreds) Clone() credentials.TransportCredentials {
	return &countingCreds{TransportCredentials: c.TransportCredentials.Clone(), r: c.r}
}

// IdentityError refuses a client certificate that chains to the client CA but carries none
// of the allowed URI SANs (its SPIFFE ID, say).
type IdentityError struct {
	Presented []string // the certificate's URI SANs: public, safe to log
}

func (e *IdentityError) Error() string {
	return fmt.Sprintf("client certificate identity %v is not among the allowed URI SANs", e.Presented)
}

// AllowURISANs is a tls.Config.VerifyConnection admitting only a client certificate that
// carries one of allowed as a URI SAN (after its chain verified against the client CA); nil
// (any certificate of the CA) when allowed is empty. Refusals are counted and logged, rate
// limited, by HandshakeFailed with reason identity_not_allowed.
func AllowURISANs(allowed []string) func(tls.ConnectionState) error {
	if len(allowed) == 0 {
		return nil
	}
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &IdentityError{}
		}
		var got []string
		for _, u := range cs.PeerCertificates[0].URIs {
			if slices.Contains(allowed, u.String()) {
				return nil
			}
			got = append(got, u.String())
		}
		return &IdentityError{Presented: got}
	}
}
