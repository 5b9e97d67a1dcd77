package idp

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestServeDrains: with drain_delay, the provider keeps answering after its context ends,
// while /readyz says draining and each connection closes after its response; Serve returns
// within the delay and a second.
func TestServeDrains(t *testing.T) {
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	addr, adminAddr := free(), free()
	cancel, done := serveYAML(t, `
listen: "`+addr+`"
admin: "`+adminAddr+`"
issuer: "http://`+addr+`"
api: {audience: orders-api, scopes: [{name: "orders:read"}]}
clients:
  - {id: job, secret: s, scopes: ["orders:read"], grant_types: [client_credentials]}
keys: {algorithm: ES256}
drain_delay: 1500ms
`)
	defer cancel()

	readyz := func() (int, string) {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var body struct{ Status string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Status
	}
	until := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	until("/readyz 200", func() bool { code, _ := readyz(); return code == 200 })

	begin := time.Now()
	cancel()
	until("/readyz to say draining", func() bool { code, st := readyz(); return code == 503 && st == "draining" })
	resp, err := http.Get("http://" + addr + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatalf("the provider stopped answering during the drain: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("during the drain: %d, close %v; want 200 and the connection closed after it", resp.StatusCode, resp.Close)
	}
	if time.Since(begin) >= 1500*time.Millisecond {
		t.Skip("the machine is too slow to observe the drain")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after the drain")
	}
	if took := time.Since(begin); took < 1500*time.Millisecond || took > 2500*time.Millisecond {
		t.Fatalf("Serve returned %s after its context ended; want the 1.5s drain and at most a second more", took)
	}
}

// serveYAML serves the provider configured by yaml until cancel; Serve's error arrives on done.
func serveYAML(t *testing.T, yaml string) (cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	cfg, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Serve(ctx, nil) }()
	return cancel, errc
}
