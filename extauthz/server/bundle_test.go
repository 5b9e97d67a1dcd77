package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/internal/testing/testissuer"
)

// The policy from a bundle server: Checks get 503 and /readyz waits until the first bundle
// arrives, then /readyz shows its revision and ETag and Checks are decided by it.
func TestPolicyBundleServer(t *testing.T) {
	b, err := policy.Load(repoPolicies(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Manifest.Revision = "bundle-rev-7"
	var tarball bytes.Buffer
	if err := bundle.NewWriter(&tarball).Write(*b); err != nil {
		t.Fatal(err)
	}
	var up atomic.Bool
	bs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("ETag", `"etag-7"`)
		_, _ = w.Write(tarball.Bytes())
	}))
	defer bs.Close()

	key := testissuer.NewKey("k1", "RS256")
	is := testissuer.New(key)
	defer is.Close()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: "127.0.0.1:0"
issuers: [{name: demo, issuer: %q, jwks_uri: %q, audiences: [orders-api]}]
policy:
  bundle:
    url: %q
    polling: {min_delay: 1s, max_delay: 1s}
decision_log: {output: "off"}
`, is.Issuer, is.JWKSURL(), bs.URL+"/scopegate.tar.gz?X-Amz-Signature=presigned-secret")))
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	srv, err := New(context.Background(), cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	client := authv3.NewAuthorizationClient(dial(t, srv.GRPCAddr()))
	tok := "Bearer " + testissuer.Sign(key, is.Standard("orders-api", "alice", "orders:read", time.Minute), nil)
	req := envoyRequest("GET", "/orders", tok, map[string]string{"route": "orders-read", "scopes": "orders:read"}, nil)

	resp, err := client.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 503 {
		t.Fatalf("no bundle yet: %v, want 503", resp)
	}
	if body := httpGet(t, "http://"+srv.AdminAddr()+"/readyz", 503); !strings.Contains(body, "policy bundle") {
		t.Fatalf("/readyz before the bundle does not say what it waits for: %s", body)
	}
	// The URL's query (a presigned signature) is never shown: /readyz is unauthenticated.
	if body := httpGet(t, "http://"+srv.AdminAddr()+"/readyz", 503); strings.Contains(body, "presigned-secret") || !strings.Contains(body, bs.URL+"/scopegate.tar.gz") {
		t.Fatalf("/readyz shows the bundle URL's query, or not its path: %s", body)
	}

	up.Store(true) // the downloader retries with backoff
	select {
	case <-srv.bundle.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("no bundle within 20s of the server coming up")
	}
	body := httpGet(t, "http://"+srv.AdminAddr()+"/readyz", 200)
	for _, want := range []string{`"revision": "bundle-rev-7"`, `"etag": "\"etag-7\""`, `"from": "server"`} {
		if !strings.Contains(body, want) {
			t.Fatalf("/readyz lacks %s: %s", want, body)
		}
	}
	resp, err = client.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetOkResponse() == nil {
		t.Fatalf("with the bundle in force: %v, want OK", resp)
	}
	if strings.Contains(body, "presigned-secret") || strings.Contains(logs.String(), "presigned-secret") {
		t.Fatalf("the bundle URL's query reached /readyz or the logs:\n%s\n%s", body, logs.String())
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
