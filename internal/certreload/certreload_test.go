package certreload

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/scopegate/scopegate/demo/democert"
)

type pki struct {
	dir            string
	ca, foreign    *democert.CA
	caFile         string
	server, client Files
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca, err := democert.NewCA("test CA", time.Hour, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := democert.NewCA("foreign CA", time.Hour, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{dir: dir, ca: ca, foreign: foreign, caFile: filepath.Join(dir, "ca.crt")}
	if err := ca.WriteCA(p.caFile); err != nil {
		t.Fatal(err)
	}
	p.server.CertFile, p.server.KeyFile = p.issue(t, ca, "server", democert.Leaf{Name: "server", Hosts: []string{"authz", "127.0.0.1"}, Server: true})
	p.server.ClientCAFile = p.caFile
	p.client.CertFile, p.client.KeyFile = p.issue(t, ca, "client", democert.Leaf{Name: "envoy", Client: true})
	return p
}

func (p *pki) issue(t *testing.T, ca *democert.CA, stem string, l democert.Leaf) (string, string) {
	t.Helper()
	c, k, err := ca.WriteLeaf(p.dir, stem, l)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

// echoServer serves TLS from r on loopback, echoing lines; accepted reports each handshake's
// outcome on the server side.
func echoServer(t *testing.T, r *Reloader) (addr string, accepted chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = make(chan error, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := tls.Server(c, r.ServerConfig())
				err := tc.Handshake()
				accepted <- err
				if err != nil {
					return
				}
				_, _ = io.Copy(tc, tc)
			}()
		}
	}()
	return ln.Addr().String(), accepted
}

func clientConfig(t *testing.T, p *pki, caFile, certFile, keyFile string) *tls.Config {
	t.Helper()
	cfg, err := ClientConfig(caFile, "", "", "authz")
	if err != nil {
		t.Fatal(err)
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		// Always present it, even when its issuer is not among the CAs the server names (Go's
		// client would otherwise send nothing): the server must refuse it itself.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	return cfg
}

// roundTrip completes the handshake and echoes one line: with TLS 1.3 the server's verdict on
// the client certificate arrives after the client's handshake returns, on the first read.
func roundTrip(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	return echo(c)
}

func echo(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return errors.New("echo: got " + line)
	}
	return nil
}

// TestHandshakeRefusals: real handshakes on loopback; each bad client is refused by the
// server (or, for a wrong name, by the client verifying the server).
func TestHandshakeRefusals(t *testing.T) {
	p := newPKI(t)
	r, err := New(Options{Files: p.server, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	addr, accepted := echoServer(t, r)
	expiredCert, expiredKey := p.issue(t, p.ca, "expired", democert.Leaf{Name: "old", Client: true,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	foreignCert, foreignKey := p.issue(t, p.foreign, "foreign", democert.Leaf{Name: "intruder", Client: true})
	serverOnlyCert, serverOnlyKey := p.issue(t, p.ca, "serveronly", democert.Leaf{Name: "not-a-client", Server: true})

	tests := []struct {
		name      string
		cfg       func() *tls.Config
		wantOK    bool
		serverErr string // the server's handshake error must contain this ("" : not checked)
		clientErr string
	}{
		{name: "mutual TLS", cfg: func() *tls.Config { return clientConfig(t, p, p.caFile, p.client.CertFile, p.client.KeyFile) }, wantOK: true},
		{name: "TLS 1.2 client", cfg: func() *tls.Config {
			c := clientConfig(t, p, p.caFile, p.client.CertFile, p.client.KeyFile)
			c.MaxVersion = tls.VersionTLS12
			return c
		}, wantOK: true},
		{name: "no client certificate", cfg: func() *tls.Config { return clientConfig(t, p, p.caFile, "", "") }, serverErr: "didn't provide a certificate"},
		{name: "certificate from another CA", cfg: func() *tls.Config { return clientConfig(t, p, p.caFile, foreignCert, foreignKey) }, serverErr: "unknown authority"},
		{name: "expired client certificate", cfg: func() *tls.Config { return clientConfig(t, p, p.caFile, expiredCert, expiredKey) }, serverErr: "expired"},
		{name: "certificate without client auth usage", cfg: func() *tls.Config { return clientConfig(t, p, p.caFile, serverOnlyCert, serverOnlyKey) }, serverErr: "incompatible key usage"},
		{name: "TLS 1.1 client", cfg: func() *tls.Config {
			c := clientConfig(t, p, p.caFile, p.client.CertFile, p.client.KeyFile)
			c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			return c
		}, serverErr: "unsupported versions"},
		{name: "wrong server name (SNI/SAN)", cfg: func() *tls.Config {
			c := clientConfig(t, p, p.caFile, p.client.CertFile, p.client.KeyFile)
			c.ServerName = "xds"
			return c
		}, clientErr: "valid for authz, not xds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := roundTrip(addr, tt.cfg())
			var serr error
			select {
			case serr = <-accepted:
			case <-time.After(5 * time.Second):
				t.Fatal("server saw no handshake")
			}
			if tt.wantOK {
				if err != nil || serr != nil {
					t.Fatalf("client: %v, server: %v", err, serr)
				}
				return
			}
			if err == nil {
				t.Fatal("connection worked, want it refused")
			}
			if tt.serverErr != "" && (serr == nil || !strings.Contains(serr.Error(), tt.serverErr)) {
				t.Errorf("server handshake error = %v, want %q", serr, tt.serverErr)
			}
			if tt.clientErr != "" && !strings.Contains(err.Error(), tt.clientErr) {
				t.Errorf("client error = %v, want %q", err, tt.clientErr)
			}
		})
	}

	t.Run("plaintext", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
		if serr := <-accepted; serr == nil || !strings.Contains(serr.Error(), "first record does not look like a TLS handshake") {
			t.Errorf("server handshake error = %v", serr)
		}
	})
}

// TestRotation: replacing the files (atomic rename) serves the new certificate to new
// handshakes while an established connection keeps working.
func TestRotation(t *testing.T) {
	p := newPKI(t)
	reloaded := make(chan error, 4)
	m := NewMetrics(prometheus.NewRegistry())
	r, err := New(Options{Files: p.server, Name: "grpc", Metrics: m, Debounce: 20 * time.Millisecond,
		OnReload: func(err error) { reloaded <- err }})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	addr, accepted := echoServer(t, r)

	cfg := clientConfig(t, p, p.caFile, p.client.CertFile, p.client.KeyFile)
	old, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := echo(old); err != nil {
		t.Fatal(err)
	}
	<-accepted
	oldSerial := old.ConnectionState().PeerCertificates[0].SerialNumber

	// Rotate; the watcher may need a moment to be in place, so rotate until it reacts.
	waitReload(t, reloaded, func() {
		p.issue(t, p.ca, "server", democert.Leaf{Name: "server", Hosts: []string{"authz"}, Server: true})
	})
	if r.Leaf().SerialNumber.Cmp(oldSerial) == 0 {
		t.Fatal("certificate not rotated")
	}
	fresh, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := echo(fresh); err != nil {
		t.Fatal(err)
	}
	if got := fresh.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(r.Leaf().SerialNumber) != 0 {
		t.Errorf("new handshake got serial %x, want the rotated %x", got, r.Leaf().SerialNumber)
	}
	if err := echo(old); err != nil {
		t.Errorf("established connection broken by rotation: %v", err)
	}

	// A bad pair (key of another certificate) is refused; the last good one stays.
	good := r.Leaf().SerialNumber
	_, otherKey := p.issue(t, p.ca, "other", democert.Leaf{Name: "other", Server: true})
	keyPEM, err := os.ReadFile(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	tmp := p.server.KeyFile + ".tmp"
	if err := os.WriteFile(tmp, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p.server.KeyFile); err != nil {
		t.Fatal(err)
	}
	if err := <-reloaded; err == nil || !strings.Contains(err.Error(), "private key does not match public key") {
		t.Fatalf("reload of a mismatched pair: %v", err)
	}
	if r.Leaf().SerialNumber.Cmp(good) != 0 {
		t.Error("a bad pair replaced the good certificate")
	}
	if err := roundTrip(addr, cfg); err != nil {
		t.Errorf("handshake after a rejected reload: %v", err)
	}
	var rejected dto.Metric
	if err := m.reloads.WithLabelValues("grpc", "rejected").Write(&rejected); err != nil {
		t.Fatal(err)
	}
	if got := rejected.GetCounter().GetValue(); got != 1 {
		t.Errorf("rejected reloads = %v, want 1", got)
	}
}

// TestKubernetesSecretSwap: a mounted Secret's files are symlinks through "..data", which
// the kubelet swaps atomically to a new timestamped directory.
func TestKubernetesSecretSwap(t *testing.T) {
	p := newPKI(t)
	mount := t.TempDir()
	gen := func(name string) {
		d := filepath.Join(mount, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		l, k := p.issue(t, p.ca, "server", democert.Leaf{Name: name, Hosts: []string{"authz"}, Server: true})
		for src, dst := range map[string]string{l: "tls.crt", k: "tls.key", p.caFile: "ca.crt"} {
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, dst), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		tmp := filepath.Join(mount, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(mount, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	gen("..2026_01")
	for _, f := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(mount, f)); err != nil {
			t.Fatal(err)
		}
	}
	reloaded := make(chan error, 4)
	r, err := New(Options{Name: "k8s", Debounce: 20 * time.Millisecond, OnReload: func(err error) { reloaded <- err },
		Files: Files{CertFile: filepath.Join(mount, "tls.crt"), KeyFile: filepath.Join(mount, "tls.key"), ClientCAFile: filepath.Join(mount, "ca.crt")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	first := r.Leaf().Subject.CommonName
	gen("..2026_02")
	// The new directory's creation may trigger a reload of the old (still valid) pair before
	// the ..data swap; wait on reloads until the swap's one serves the new certificate.
	deadline := time.After(10 * time.Second)
	for r.Leaf().Subject.CommonName == first {
		select {
		case err := <-reloaded:
			if err != nil {
				t.Fatalf("reload: %v", err)
			}
		case <-deadline:
			t.Fatalf("still serving %s 10s after the ..data swap", first)
		}
	}
}

func TestNewNamesTheFile(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name  string
		files Files
		want  string
	}{
		{"missing cert", Files{KeyFile: p.server.KeyFile}, "test.tls.cert_file: required"},
		{"unreadable key", Files{CertFile: p.server.CertFile, KeyFile: filepath.Join(p.dir, "nope.key")}, "key_file: open"},
		{"mismatched pair", Files{CertFile: p.server.CertFile, KeyFile: p.client.KeyFile}, "private key does not match"},
		{"CA file without PEM", Files{CertFile: p.server.CertFile, KeyFile: p.server.KeyFile, ClientCAFile: p.server.KeyFile}, "client_ca_file: " + p.server.KeyFile + ": no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{Files: tt.files, Name: "test"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	expCert, expKey := p.issue(t, p.ca, "exp", democert.Leaf{Name: "exp", Server: true, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	if _, err := New(Options{Files: Files{CertFile: expCert, KeyFile: expKey}, Name: "test"}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired certificate: err = %v", err)
	}
}

// waitReload makes change and waits for the reload it triggers to succeed.
func waitReload(t *testing.T, reloaded <-chan error, change func()) {
	t.Helper()
	change()
	select {
	case err := <-reloaded:
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s of the change")
	}
}

// TestDirectorySwaps: the folder holding the files is replaced whole, by two renames
// (mv certs certs.old; mv certs.new certs) or by a git-sync-style symlink swap (ln -s v2
// link.tmp; mv -T link.tmp link); the files named in the config are watched as the user
// names them, so each swap serves the new certificate (issue 20).
func TestDirectorySwaps(t *testing.T) {
	p := newPKI(t)
	fill := func(d, name string) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		l, k := p.issue(t, p.ca, "server", democert.Leaf{Name: name, Hosts: []string{"authz"}, Server: true})
		for src, dst := range map[string]string{l: "tls.crt", k: "tls.key"} {
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, dst), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name string
		// setup fills the first version and returns the folder the config names; swap
		// replaces it with a folder holding a certificate for name.
		setup func(root string) string
		swap  func(root, name string)
	}{
		{"rename", func(root string) string {
			fill(filepath.Join(root, "certs"), "v1")
			return filepath.Join(root, "certs")
		}, func(root, name string) {
			fill(filepath.Join(root, "certs.new"), name)
			if err := os.Rename(filepath.Join(root, "certs"), filepath.Join(root, "certs.old-"+name)); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(root, "certs.new"), filepath.Join(root, "certs")); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlink", func(root string) string {
			fill(filepath.Join(root, "v1"), "v1")
			if err := os.Symlink("v1", filepath.Join(root, "link")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(root, "link")
		}, func(root, name string) {
			fill(filepath.Join(root, name), name)
			if err := os.Symlink(name, filepath.Join(root, "link.tmp")); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(root, "link.tmp"), filepath.Join(root, "link")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := tc.setup(root)
			reloaded := make(chan error, 16)
			r, err := New(Options{Name: "swap", Debounce: 20 * time.Millisecond, OnReload: func(err error) { reloaded <- err },
				Files: Files{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			// Twice: the second swap proves the watch moved on to the new folder.
			for _, name := range []string{"v2", "v3"} {
				tc.swap(root, name)
				deadline := time.After(10 * time.Second)
				for r.Leaf().Subject.CommonName != name {
					select {
					case err := <-reloaded:
						if err != nil {
							t.Logf("reload during the swap: %v", err) // a half-swapped folder may be refused; the last good pair stays
						}
					case <-deadline:
						t.Fatalf("serving %s 10s after swapping in %s", r.Leaf().Subject.CommonName, name)
					}
				}
			}
		})
	}
}
