package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/scopegate/scopegate/extauthz/policy"
)

// A policy whose decision names its version, with a test that passes (or, with broken, fails).
func policySource(version string, broken bool) string {
	want := version
	if broken {
		want = "something else"
	}
	return `package scopegate.authz

decision := {"allow": true, "reason": "` + version + `"}

test_version if decision.reason == "` + want + `"
`
}

// makeBundle writes a bundle with OPA's writer, signed with OPA's signing package when key
// is set.
func makeBundle(t *testing.T, revision, src string, key *rsa.PrivateKey, keyID string) []byte {
	t.Helper()
	return makeBundleThen(t, revision, src, key, keyID, nil)
}

// makeBundleThen lets after change the bundle once it is signed.
func makeBundleThen(t *testing.T, revision, src string, key *rsa.PrivateKey, keyID string, after func(*bundle.Bundle)) []byte {
	t.Helper()
	// A module that does not parse is written as it is: the server's side does not compile.
	parsed, _ := ast.ParseModuleWithOpts("/authz.rego", src, ast.ParserOptions{RegoVersion: ast.RegoV1})
	b := bundle.Bundle{
		Manifest: bundle.Manifest{Revision: revision, Roots: &[]string{""}},
		Data:     map[string]any{},
		Modules: []bundle.ModuleFile{{
			URL: "/authz.rego", Path: "/authz.rego", Raw: []byte(src),
			Parsed: parsed,
		}},
	}
	if key != nil {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		priv := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		if err := b.GenerateSignature(bundle.NewSigningConfig(priv, "RS256", ""), keyID, false); err != nil {
			t.Fatal(err)
		}
	}
	if after != nil {
		after(&b)
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// server is a bundle server: one bundle and its ETag, 304 on a matching If-None-Match.
type server struct {
	mu        sync.Mutex
	body      []byte
	etag      string
	down      bool
	ok, not   int
	gotBearer string
}

func (s *server) set(body []byte, etag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.etag = body, etag
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gotBearer = r.Header.Get("Authorization")
	if s.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == s.etag {
		s.not++
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.ok++
	w.Header().Set("ETag", s.etag)
	w.Header().Set("Content-Type", "application/gzip")
	_, _ = w.Write(s.body)
}

func (s *server) counts() (ok, notModified int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok, s.not
}

type rig struct {
	engine *policy.Engine
	src    *Source
	reg    *prometheus.Registry
}

func newRig(t *testing.T, c Bundle) *rig {
	t.Helper()
	reg := prometheus.NewRegistry()
	e := policy.NewPending(policy.Options{RunTests: true, Metrics: policy.NewMetrics(reg)})
	src, err := New(t.Context(), Options{Bundle: c, Engine: e, Manual: true})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{engine: e, src: src, reg: reg}
}

func (r *rig) revision() string {
	if rev := r.engine.Revision(); rev != nil {
		return rev.ID
	}
	return ""
}

func (r *rig) loads(t *testing.T, result string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "scopegate_policy_loads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func (r *rig) isReady() bool {
	select {
	case <-r.src.Ready():
		return true
	default:
		return false
	}
}

// signingKey is the bundle signing key in file, as the wiring reads it from the config.
func signingKey(t *testing.T, file, keyID string) *policy.Signing {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return &policy.Signing{PublicKey: pem, KeyID: keyID, Field: "policy.bundle.signing.public_key_file", File: file}
}

func bundleConfig(url string) Bundle {
	return Bundle{URL: url + "/bundles/scopegate.tar.gz", MinDelay: time.Second, MaxDelay: 2 * time.Second}
}

func TestETagNewRevisionAndBrokenOne(t *testing.T) {
	srv := &server{}
	srv.set(makeBundle(t, "r1", policySource("r1", false), nil, ""), `"e1"`)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("bundle-reader-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := bundleConfig(hs.URL)
	c.BearerTokenFile = tokenFile
	r := newRig(t, c)
	ctx := t.Context()
	if r.isReady() || r.revision() != "" {
		t.Fatal("ready before any bundle")
	}

	steps := []struct {
		name            string
		body            []byte
		etag            string
		wantErr         bool
		wantRev, etg    string
		wantOK, want304 int
		wantRejected    float64
	}{
		{name: "first bundle", wantRev: "r1", etg: `"e1"`, wantOK: 1},
		{name: "unchanged: If-None-Match gets 304", wantRev: "r1", etg: `"e1"`, wantOK: 1, want304: 1},
		{name: "new revision", body: makeBundle(t, "r2", policySource("r2", false), nil, ""), etag: `"e2"`, wantRev: "r2", etg: `"e2"`, wantOK: 2, want304: 1},
		{name: "failing tests: rejected, r2 stays", body: makeBundle(t, "r3", policySource("r3", true), nil, ""), etag: `"e3"`, wantErr: true, wantRev: "r2", etg: `"e2"`, wantOK: 3, want304: 1, wantRejected: 1},
		{name: "the rejected ETag is not fetched again", wantRev: "r2", etg: `"e2"`, wantOK: 3, want304: 2, wantRejected: 1},
		{name: "does not parse: rejected", body: makeBundle(t, "r4", "package scopegate.authz\n\ndecision := {\n", nil, ""), etag: `"e4"`, wantErr: true, wantRev: "r2", etg: `"e2"`, wantOK: 4, want304: 2, wantRejected: 2},
		{name: "no rule defines the query: rejected", body: makeBundle(t, "r5", "package other\n\nx := 1\n", nil, ""), etag: `"e5"`, wantErr: true, wantRev: "r2", etg: `"e2"`, wantOK: 5, want304: 2, wantRejected: 3},
		{name: "corrupt tarball: rejected", body: []byte("not a tarball"), etag: `"e6"`, wantErr: true, wantRev: "r2", etg: `"e2"`, wantOK: 6, want304: 2, wantRejected: 4},
		{name: "a good one after all that", body: makeBundle(t, "r7", policySource("r7", false), nil, ""), etag: `"e7"`, wantRev: "r7", etg: `"e7"`, wantOK: 7, want304: 2, wantRejected: 4},
	}
	for _, st := range steps {
		if st.body != nil {
			srv.set(st.body, st.etag)
		}
		err := r.src.Trigger(ctx)
		if (err != nil) != st.wantErr {
			t.Fatalf("%s: Trigger error = %v, want error %v", st.name, err, st.wantErr)
		}
		ok, nm := srv.counts()
		status := r.src.Status()
		if r.revision() != st.wantRev || status.Revision != st.wantRev || status.ETag != st.etg || ok != st.wantOK || nm != st.want304 || r.loads(t, "rejected") != st.wantRejected {
			t.Fatalf("%s: revision %q (status %q, etag %s), 200s %d, 304s %d, rejected %v; want %q %s %d %d %v",
				st.name, r.revision(), status.Revision, status.ETag, ok, nm, r.loads(t, "rejected"), st.wantRev, st.etg, st.wantOK, st.want304, st.wantRejected)
		}
		if !r.isReady() {
			t.Fatalf("%s: not ready", st.name)
		}
		if st.wantErr && status.LastError == "" {
			t.Fatalf("%s: no last_error in status", st.name)
		}
	}
	if srv.gotBearer != "Bearer bundle-reader-secret" {
		t.Fatalf("bundle server got Authorization %q", srv.gotBearer)
	}
	if strings.Contains(r.src.Status().LastError, "bundle-reader-secret") {
		t.Fatal("the bearer token leaked into the status")
	}
}

func TestSignatures(t *testing.T) {
	good, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&good.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := &server{}
	srv.set(makeBundle(t, "s1", policySource("s1", false), good, "global"), `"s1"`)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	c := bundleConfig(hs.URL)
	c.Signing = signingKey(t, keyFile, "global")
	r := newRig(t, c)
	if err := r.src.Trigger(t.Context()); err != nil || r.revision() != "s1" {
		t.Fatalf("signed bundle: %v, revision %q", err, r.revision())
	}
	for i, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"signed with another key", makeBundle(t, "s2", policySource("s2", false), other, "global"), "verification"},
		{"changed after signing", makeBundleThen(t, "s3", policySource("s3", false), good, "global", func(b *bundle.Bundle) {
			b.Modules[0].Raw = []byte(policySource("s3-evil", false))
		}), "digest"},
		{"unsigned", makeBundle(t, "s4", policySource("s4", false), nil, ""), "signatures"},
	} {
		srv.set(tc.body, `"bad`+tc.name+`"`)
		err := r.src.Trigger(t.Context())
		if err == nil || r.revision() != "s1" || float64(i+1) != r.loads(t, "rejected") {
			t.Fatalf("%s: error %v, revision %q, rejected %v: want refused, s1 in force", tc.name, err, r.revision(), r.loads(t, "rejected"))
		}
		if !strings.Contains(strings.ToLower(r.src.Status().LastError), tc.want) {
			t.Fatalf("%s: last_error %q does not mention %q", tc.name, r.src.Status().LastError, tc.want)
		}
	}
}

func TestServerDownAtStart(t *testing.T) {
	srv := &server{}
	srv.set(makeBundle(t, "p1", policySource("p1", false), nil, ""), `"p1"`)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	persist := t.TempDir()

	t.Run("no persisted bundle: not ready, no revision", func(t *testing.T) {
		srv.mu.Lock()
		srv.down = true
		srv.mu.Unlock()
		c := bundleConfig(hs.URL)
		c.PersistDir = t.TempDir()
		r := newRig(t, c)
		if err := r.src.Trigger(t.Context()); err == nil {
			t.Fatal("download from a down server succeeded")
		}
		if r.isReady() || r.revision() != "" || r.src.Status().LastError == "" || r.loads(t, "rejected") != 0 {
			t.Fatalf("ready %v, revision %q, status %+v, rejected %v", r.isReady(), r.revision(), r.src.Status(), r.loads(t, "rejected"))
		}
	})

	// A first instance downloads and persists p1.
	srv.mu.Lock()
	srv.down = false
	srv.mu.Unlock()
	c := bundleConfig(hs.URL)
	c.PersistDir = persist
	first := newRig(t, c)
	if err := first.src.Trigger(t.Context()); err != nil || first.revision() != "p1" {
		t.Fatalf("first download: %v %q", err, first.revision())
	}

	t.Run("persisted bundle: ready with it, then 304 for its ETag", func(t *testing.T) {
		srv.mu.Lock()
		srv.down = true
		srv.mu.Unlock()
		r := newRig(t, c)
		st := r.src.Status()
		if !r.isReady() || r.revision() != "p1" || st.From != "persisted" || st.ETag != `"p1"` {
			t.Fatalf("restart with the server down: ready %v, revision %q, status %+v", r.isReady(), r.revision(), st)
		}
		if err := r.src.Trigger(t.Context()); err == nil || r.revision() != "p1" {
			t.Fatalf("server still down: %v, revision %q", err, r.revision())
		}
		srv.mu.Lock()
		srv.down = false
		srv.mu.Unlock()
		ok0, nm0 := srv.counts()
		if err := r.src.Trigger(t.Context()); err != nil {
			t.Fatal(err)
		}
		if ok, nm := srv.counts(); ok != ok0 || nm != nm0+1 {
			t.Fatalf("server back: 200s %d→%d, 304s %d→%d; want one 304 (the persisted ETag was sent)", ok0, ok, nm0, nm)
		}
	})

	t.Run("a persisted file changed on disk is refused", func(t *testing.T) {
		p := filepath.Join(persist, persistBundle)
		if err := os.WriteFile(p, []byte("tampered"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := newRig(t, c)
		if r.isReady() || r.revision() != "" || r.loads(t, "rejected") != 1 {
			t.Fatalf("tampered persisted bundle: ready %v, revision %q", r.isReady(), r.revision())
		}
	})
}

// Polling mode: Start fetches without a Trigger and Ready fires on the first good bundle.
func TestPollingStart(t *testing.T) {
	srv := &server{}
	srv.set(makeBundle(t, "q1", policySource("q1", false), nil, ""), `"q1"`)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	reg := prometheus.NewRegistry()
	e := policy.NewPending(policy.Options{RunTests: true, Metrics: policy.NewMetrics(reg)})
	src, err := New(t.Context(), Options{Bundle: bundleConfig(hs.URL), Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	src.Start(t.Context())
	defer src.Stop(context.Background())
	select {
	case <-src.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("no bundle within 10s of Start")
	}
	r := &rig{engine: e, src: src, reg: reg}
	if r.revision() != "q1" || r.loads(t, "ok") != 1 {
		t.Fatalf("revision %q, ok loads %v", r.revision(), r.loads(t, "ok"))
	}
}
