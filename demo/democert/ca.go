package democert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/scopegate/scopegate/internal/spiffe"
)

// DefaultTrustDomain is the demo's SPIFFE trust domain.
const DefaultTrustDomain = "scopegate.demo"

// CAFile is the demo CA's certificate in a set written by WriteSet. The CA's key is never
// written: the demo makes a new CA, and new certificates, at every start.
const CAFile = "ca.crt"

// CA is a demo certificate authority held in memory.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     *ecdsa.PrivateKey
}

// NewCA makes a self-signed CA valid from now-1m for validity.
func NewCA(name string, validity time.Duration, now time.Time) (*CA, error) {
	if validity <= 0 {
		return nil, errors.New("demo CA: validity must be positive")
	}
	if now.IsZero() {
		now = time.Now()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("demo CA: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"scopegate demo (NOT FOR PRODUCTION)"}, CommonName: name},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("demo CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("demo CA: %w", err)
	}
	return &CA{Cert: cert, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}, nil
}

// Leaf describes a certificate the CA issues.
type Leaf struct {
	// Name is the subject common name (informational: verifiers read the SANs).
	Name string
	// Hosts are DNS names and IP addresses for the subjectAltName.
	Hosts []string
	// URIs are URI SANs, such as SPIFFE IDs (spiffe://trust-domain/path).
	URIs []string
	// Server and Client set the extended key usages.
	Server, Client bool
	// NotBefore and NotAfter bound validity; zero: now-1m and now+24h.
	NotBefore, NotAfter time.Time
}

// Issue signs a new key for l and returns the PEM certificate and PKCS#8 PEM key.
func (ca *CA) Issue(l Leaf) (certPEM, keyPEM []byte, err error) {
	if !l.Server && !l.Client {
		return nil, nil, fmt.Errorf("demo cert %s: neither server nor client", l.Name)
	}
	now := time.Now()
	if l.NotBefore.IsZero() {
		l.NotBefore = now.Add(-time.Minute)
	}
	if l.NotAfter.IsZero() {
		l.NotAfter = now.Add(24 * time.Hour)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("demo cert %s: %w", l.Name, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"scopegate demo (NOT FOR PRODUCTION)"}, CommonName: l.Name},
		NotBefore:    l.NotBefore,
		NotAfter:     l.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if l.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if l.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	for _, h := range l.Hosts {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
			return nil, nil, fmt.Errorf("demo cert %s: empty host name", l.Name)
		case net.ParseIP(h) != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(h))
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	for _, u := range l.URIs {
		parsed, err := url.Parse(u)
		if err != nil || parsed.Scheme == "" {
			return nil, nil, fmt.Errorf("demo cert %s: URI SAN %q is not a URI", l.Name, u)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("demo cert %s: %w", l.Name, err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("demo cert %s: %w", l.Name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), nil
}

// SetOptions say which internal-hop certificates WriteSet issues.
type SetOptions struct {
	// TrustDomain is the SPIFFE trust domain of every identity (default "scopegate.demo").
	TrustDomain string
	// Fleet is the fleet the Envoy certificate is bound to (default "edge").
	Fleet string
	// Hosts are added to every server certificate's SANs, besides the service's own name
	// (default localhost and 127.0.0.1).
	Hosts    []string
	Validity time.Duration
}

// Services are the certificates WriteSet issues, by file stem: authz and xds serve (and may
// be clients); envoy is Envoy's identity towards xds (bound to its fleet by its SPIFFE ID,
// read from the Envoy host's disk); authz-client is what xds pushes to Envoy by SDS for the
// Envoy → authz hop. The two differ on purpose: a certificate pushed to every fleet must
// never be one fleet's xDS identity (xds refuses it).
var Services = []string{"authz", "xds", "envoy", AuthzClient}

// AuthzClient is the file stem, and the SPIFFE path, of the authz client certificate.
const AuthzClient = "authz-client"

// WriteSet makes a new CA and one certificate per service, and writes dir/ca.crt and
// dir/<service>.crt and .key (keys 0600). The CA's key is not written.
func WriteSet(dir string, o SetOptions) (*CA, error) {
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	if o.Fleet == "" {
		o.Fleet = "edge"
	}
	if o.Hosts == nil {
		o.Hosts = []string{"localhost", "127.0.0.1"}
	}
	if o.Validity <= 0 {
		o.Validity = 30 * 24 * time.Hour
	}
	now := time.Now()
	ca, err := NewCA("scopegate demo CA", o.Validity, now)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("demo certs: %w", err)
	}
	if err := writeAtomic(filepath.Join(dir, CAFile), ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	for _, svc := range Services {
		l := Leaf{Name: svc, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(o.Validity), Client: true}
		switch svc {
		case "envoy":
			l.URIs = []string{spiffe.FleetID(o.TrustDomain, o.Fleet)}
			l.Hosts = []string{"envoy"}
		case AuthzClient:
			l.URIs = []string{spiffe.ID(o.TrustDomain, AuthzClient)}
		default:
			l.Server = true
			l.URIs = []string{spiffe.ID(o.TrustDomain, svc)}
			l.Hosts = append([]string{svc}, o.Hosts...)
		}
		if _, _, err := ca.WriteLeaf(dir, svc, l); err != nil {
			return nil, err
		}
	}
	return ca, nil
}

// WriteLeaf issues l and writes dir/stem.crt and dir/stem.key (0600), each replaced
// atomically, the key first so a reader never pairs a new certificate with an old key for
// long.
func (ca *CA) WriteLeaf(dir, stem string, l Leaf) (certPath, keyPath string, err error) {
	certPEM, keyPEM, err := ca.Issue(l)
	if err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, stem+".crt"), filepath.Join(dir, stem+".key")
	if err := writeAtomic(keyPath, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeAtomic(certPath, certPEM, 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// WriteCA writes the CA certificate to path.
func (ca *CA) WriteCA(path string) error { return writeAtomic(path, ca.CertPEM, 0o644) }

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("demo cert: %w", err)
	}
	return serial, nil
}
