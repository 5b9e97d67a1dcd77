package remote

import (
	"bytes"
	"encoding/pem"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/scopegate/scopegate/extauthz/policy"
)

// storage stands for object storage a bundle server redirects to: it records the
// Authorization header of every request.
type storage struct {
	mu   sync.Mutex
	auth []string
	body []byte
}

func (s *storage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	s.mu.Unlock()
	w.Header().Set("ETag", `"s1"`)
	_, _ = w.Write(s.body)
}

func (s *storage) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auth...)
}

// A bundle server that redirects to another origin (object storage, a presigned URL) is
// followed, but the bearer token stays with the origin configured; the same host on another
// port is another origin. A redirect from https to plain http is refused outright.
func TestBundleRedirectKeepsCredentialsAtOrigin(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("bundle-reader-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	store := &storage{body: makeBundle(t, "s1", policySource("s1", false), nil, "")}
	other := httptest.NewServer(store)
	defer other.Close()
	var originAuth string
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		originAuth = r.Header.Get("Authorization")
		http.Redirect(w, r, other.URL+"/b.tar.gz?X-Amz-Signature=presigned", http.StatusTemporaryRedirect)
	}))
	defer origin.Close()
	c := bundleConfig(origin.URL)
	c.BearerTokenFile = tokenFile
	r := newRig(t, c)
	if err := r.src.Trigger(t.Context()); err != nil {
		t.Fatalf("redirected download: %v", err)
	}
	if r.revision() != "s1" {
		t.Fatalf("revision %q, want s1", r.revision())
	}
	if originAuth != "Bearer bundle-reader-secret" {
		t.Fatalf("the origin got Authorization %q", originAuth)
	}
	if got := store.requests(); len(got) != 1 || got[0] != "" {
		t.Fatalf("the other origin got Authorization %q; want none", got)
	}

	// https → http: refused, nothing reaches the plain-HTTP host.
	plain := &storage{body: store.body}
	plainSrv := httptest.NewServer(plain)
	defer plainSrv.Close()
	tlsOrigin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plainSrv.URL+"/b.tar.gz", http.StatusFound)
	}))
	defer tlsOrigin.Close()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, pemCert(tlsOrigin.Certificate().Raw), 0o600); err != nil {
		t.Fatal(err)
	}
	c = bundleConfig(tlsOrigin.URL)
	c.BearerTokenFile, c.CAFile = tokenFile, caFile
	down := newRig(t, c)
	if err := down.src.Trigger(t.Context()); err == nil || !strings.Contains(err.Error(), "redirect from https") || down.revision() != "" {
		t.Fatalf("https → http redirect: %v, revision %q; want it refused", err, down.revision())
	}
	if got := plain.requests(); len(got) != 0 {
		t.Fatalf("the plain-HTTP host got %d requests", len(got))
	}
}

// The bundle URL's query (a presigned URL's signature) and user info never reach /readyz's
// status, its last error, or the logs: scheme, host and path only.
func TestBundleURLRedacted(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: the download fails with a *url.Error naming the URL
	var logs bytes.Buffer
	c := bundleConfig("http://reader:pa55word@" + addr)
	c.URL += "?X-Amz-Credential=AKIA&X-Amz-Signature=presigned-secret"
	e := policy.NewPending(policy.Options{RunTests: true})
	src, err := New(t.Context(), Options{Bundle: c, Engine: e, Manual: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Trigger(t.Context()); err == nil {
		t.Fatal("download from a closed port succeeded")
	}
	st := src.Status()
	if want := "http://" + addr + "/bundles/scopegate.tar.gz"; st.URL != want {
		t.Fatalf("status url %q, want %q", st.URL, want)
	}
	if st.LastError == "" {
		t.Fatal("no last error")
	}
	for _, secret := range []string{"presigned-secret", "AKIA", "pa55word"} {
		for where, text := range map[string]string{"status url": st.URL, "last error": st.LastError, "logs": logs.String()} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows %q: %s", where, secret, text)
			}
		}
	}
	if !strings.Contains(logs.String(), addr) {
		t.Errorf("the logs do not name the bundle server at all:\n%s", logs.String())
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
