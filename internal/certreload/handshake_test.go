package certreload

import (
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"

	"github.com/scopegate/scopegate/demo/democert"
	"github.com/scopegate/scopegate/internal/testing/logtest"
)

// TestHandshakeFailuresCounted: a gRPC server on Credentials, real handshakes on loopback;
// each refused one is counted under its reason, and logged at most once per reason per period.
func TestHandshakeFailuresCounted(t *testing.T) {
	p := newPKI(t)
	logs := make(logtest.Records, 64)
	var skew atomic.Int64
	start := time.Now()
	m := NewMetrics(prometheus.NewRegistry())
	r, err := New(Options{Files: p.server, Name: "grpc", Metrics: m, Logger: slog.New(logs),
		Now: func() time.Time { return start.Add(time.Duration(skew.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(r.Credentials()))
	go srv.Serve(ln)
	defer srv.Stop()
	addr := ln.Addr().String()

	expiredCert, expiredKey := p.issue(t, p.ca, "expired", democert.Leaf{Name: "old", Client: true,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	foreignCert, foreignKey := p.issue(t, p.foreign, "foreign", democert.Leaf{Name: "intruder", Client: true})
	serverOnlyCert, serverOnlyKey := p.issue(t, p.ca, "serveronly", democert.Leaf{Name: "not-a-client", Server: true})
	foreignCA := p.dir + "/foreign-ca.crt"
	if err := p.foreign.WriteCA(foreignCA); err != nil {
		t.Fatal(err)
	}
	tlsTry := func(cfg *tls.Config) func() {
		return func() {
			cfg.NextProtos = []string{"h2"}
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
			if err == nil {
				_ = echo(c) // TLS 1.3: the server's verdict on our certificate comes on the first read
				c.Close()
			}
		}
	}
	raw := func(send string) func() {
		return func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = c.Write([]byte(send))
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Read(make([]byte, 64)) // until the server gives up on us
			c.Close()
		}
	}
	tests := []struct {
		reason string
		try    func()
	}{
		{ReasonNoClientCert, tlsTry(clientConfig(t, p, p.caFile, "", ""))},
		{ReasonUnknownAuthority, tlsTry(clientConfig(t, p, p.caFile, foreignCert, foreignKey))},
		{ReasonExpired, tlsTry(clientConfig(t, p, p.caFile, expiredCert, expiredKey))},
		{ReasonBadCertificate, tlsTry(clientConfig(t, p, p.caFile, serverOnlyCert, serverOnlyKey))},
		{ReasonProtocolVersion, tlsTry(func() *tls.Config {
			c := clientConfig(t, p, p.caFile, p.client.CertFile, p.client.KeyFile)
			c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			return c
		}())},
		{ReasonNotTLS, raw("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")},
		{ReasonClientRejected, tlsTry(clientConfig(t, p, foreignCA, p.client.CertFile, p.client.KeyFile))},
		{ReasonAborted, func() { // a TCP probe: connect, close
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			tt.try()
			waitCount(t, m, tt.reason, 1)
		})
	}
	// A good client is not counted.
	good := clientConfig(t, p, p.caFile, p.client.CertFile, p.client.KeyFile)
	good.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", addr, good)
	if err != nil {
		t.Fatalf("good client: %v", err)
	}
	c.Close()
	series := make(chan prometheus.Metric, 32)
	m.handshakeFailures.Collect(series)
	close(series)
	if got := len(series); got != len(tests) {
		t.Errorf("%d reason series, want %d", got, len(tests))
	}
	for _, tt := range tests {
		if n := failures(m, tt.reason); n != 1 {
			t.Errorf("%s counted %v times, want 1", tt.reason, n)
		}
	}

	// The log: one line per reason, then silence for the same reason within the period, then
	// one line saying how many went unlogged.
	lines := drain(logs)
	if got := countContaining(lines, "reason="+ReasonNoClientCert); got != 1 || !strings.Contains(strings.Join(lines, "\n"), "WARN TLS handshake refused reason=no_client_certificate remote=127.0.0.1:") {
		t.Fatalf("log lines for no_client_certificate: %d, want 1 at WARN naming the remote address:\n%s", got, strings.Join(lines, "\n"))
	}
	noCert := tlsTry(clientConfig(t, p, p.caFile, "", ""))
	for i := 0; i < 3; i++ {
		noCert()
	}
	waitCount(t, m, ReasonNoClientCert, 4)
	if lines := drain(logs); countContaining(lines, "reason="+ReasonNoClientCert) != 0 {
		t.Fatalf("repeated refusals logged within the period:\n%s", strings.Join(lines, "\n"))
	}
	skew.Store(int64(handshakeLogEvery + time.Second))
	noCert()
	waitCount(t, m, ReasonNoClientCert, 5)
	lines = drain(logs)
	if countContaining(lines, "reason="+ReasonNoClientCert) != 1 || countContaining(lines, "unlogged_since_last=3") != 1 {
		t.Fatalf("after the period: want one line counting the 3 unlogged:\n%s", strings.Join(lines, "\n"))
	}
}

func waitCount(t *testing.T, m *Metrics, reason string, want float64) {
	t.Helper()
	guard := time.Now().Add(10 * time.Second)
	for failures(m, reason) < want {
		if time.Now().After(guard) {
			t.Fatalf("%s counted %v times, want %v", reason, failures(m, reason), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func failures(m *Metrics, reason string) float64 {
	var d dto.Metric
	_ = m.handshakeFailures.WithLabelValues("grpc", reason).Write(&d)
	return d.GetCounter().GetValue()
}

func drain(logs logtest.Records) []string {
	var out []string
	for {
		select {
		case l := <-logs:
			out = append(out, l)
		default:
			return out
		}
	}
}

func countContaining(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}
