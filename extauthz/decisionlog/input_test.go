package decisionlog

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/token"
	"github.com/scopegate/scopegate/internal/checkreq"
)

// With WithInput, a verified request's line carries the input every policy field is built
// from, and never a credential.
func TestInput(t *testing.T) {
	const secret = "eyJhbGciOiJSUzI1NiJ9.secret-token.sig"
	req := checkreq.Request{ID: "req-1", Method: "GET", Path: "/orders/1?expand=items", Host: "api.example.com",
		Headers: map[string]string{"authorization": "Bearer " + secret, "cookie": "session=" + secret,
			"proxy-authorization": "Basic " + secret, "x-team": "payments"},
		ContextExtensions: map[string]string{"route": "orders-read", "scopes": "orders:read"}}.MustBuild()
	id, err := token.IdentityFromClaims("demo", map[string]any{"iss": "https://idp", "sub": "alice", "client_id": "web",
		"scope": "orders:read", "exp": 4102444800.0}, []string{"scope"}, []string{"client_id"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		withInput bool
		identity  *token.Identity
		wantInput bool
	}{
		{"include_input on", true, id, true},
		{"include_input off", false, id, false},
		{"no verified token: no input", true, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			l := New(&out, 1, 0)
			if tc.withInput {
				l.WithInput()
			}
			l.Log(&Record{Time: time.Unix(1, 0), RequestID: "req-1", Allow: true, Status: 200, View: policy.NewView(req), Identity: tc.identity})
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out.String(), "secret") || strings.Contains(out.String(), `"authorization"`) || strings.Contains(out.String(), `"cookie"`) {
				t.Fatalf("a credential in the decision log: %s", out.String())
			}
			var line struct {
				RequestID string `json:"request_id"`
				Input     *struct {
					Request struct {
						Path    string              `json:"path"`
						Query   map[string][]string `json:"query"`
						Headers map[string]string   `json:"headers"`
					} `json:"request"`
					Route struct {
						Name   string   `json:"name"`
						Scopes []string `json:"scopes"`
					} `json:"route"`
					Token struct {
						Sub    string   `json:"sub"`
						Scopes []string `json:"scopes"`
					} `json:"token"`
				} `json:"input"`
			}
			if err := json.Unmarshal(out.Bytes(), &line); err != nil {
				t.Fatalf("%v: %s", err, out.String())
			}
			if line.RequestID != "req-1" || (line.Input != nil) != tc.wantInput {
				t.Fatalf("request_id %q, input present %v: %s", line.RequestID, line.Input != nil, out.String())
			}
			if in := line.Input; in != nil && (in.Request.Path != "/orders/1" || in.Request.Query["expand"][0] != "items" ||
				in.Request.Headers["x-team"] != "payments" || in.Route.Name != "orders-read" || in.Token.Sub != "alice" || in.Token.Scopes[0] != "orders:read") {
				t.Fatalf("input: %+v", in)
			}
		})
	}
}

// BenchmarkLog is the cost of one written line, without and with the input (bytes/line is
// the line's size).
func BenchmarkLog(b *testing.B) {
	req := checkreq.Request{ID: "7f8e5b2c-1d3a-4e5f-9a8b-0c1d2e3f4a5b", Method: "GET", Path: "/orders/42?expand=items", Host: "api.example.com",
		Protocol: "HTTP/2", Source: "10.0.0.7:41234",
		Headers: map[string]string{"authorization": "Bearer x", "user-agent": "curl/8.5.0", "accept": "*/*",
			"x-forwarded-proto": "https", "x-request-id": "7f8e5b2c-1d3a-4e5f-9a8b-0c1d2e3f4a5b", "x-envoy-expected-rq-timeout-ms": "15000"},
		ContextExtensions: map[string]string{"route": "orders-read", "scopes": "orders:read"}}.MustBuild()
	id, err := token.IdentityFromClaims("demo", map[string]any{"iss": "http://localhost:9400", "sub": "user-1", "client_id": "reporting-job",
		"aud": "orders-api", "scope": "orders:read", "exp": 4102444800.0, "iat": 1700000000.0, "jti": "jti-1"}, []string{"scope"}, []string{"client_id"})
	if err != nil {
		b.Fatal(err)
	}
	for _, withInput := range []bool{false, true} {
		name := "without-input"
		if withInput {
			name = "with-input"
		}
		b.Run(name, func(b *testing.B) {
			var cw countingWriter
			l := New(&cw, 1, 0)
			if withInput {
				l.WithInput()
			}
			rec := Record{Time: time.Unix(1, 0), RequestID: "7f8e5b2c-1d3a-4e5f-9a8b-0c1d2e3f4a5b", Route: "orders-read", Method: "GET", Path: "/orders/42",
				Issuer: "demo", Subject: "user-1", ClientID: "reporting-job", Scopes: "orders:read", Allow: true, Status: 200, Revision: "abc",
				View: policy.NewView(req), Identity: id, TokenDoc: &memo{}}
			b.ReportAllocs()
			for b.Loop() {
				l.Log(&rec)
			}
			_ = l.Close()
			b.ReportMetric(float64(cw.n)/float64(b.N), "bytes/line")
		})
	}
}

type countingWriter struct{ n int }

// memo is a per-token memo of the token document, as the Check service keeps one.
type memo struct{ doc []byte }

func (m *memo) TokenJSON(id *token.Identity) []byte {
	if m.doc == nil {
		m.doc = policy.AppendTokenJSON(nil, id)
	}
	return m.doc
}

func (c *countingWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

// WithInputSampleRate thins the inputs of allowed decisions only: every refusal's line (and a
// shadow would-be refusal's) keeps its input, for `policy impact` to replay.
func TestInputSampleRate(t *testing.T) {
	req := checkreq.Request{Path: "/orders/1", ContextExtensions: map[string]string{"route": "orders-read"}}.MustBuild()
	id, err := token.IdentityFromClaims("demo", map[string]any{"iss": "https://idp", "sub": "alice", "exp": 4102444800.0}, []string{"scope"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	count := func(rate float64, n int, rec Record) (lines, withInput int) {
		var out bytes.Buffer
		l := New(&out, 1, 0).WithInput().WithInputSampleRate(rate)
		for range n {
			r := rec
			l.Log(&r)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			lines++
			if strings.Contains(line, `"input":{`) {
				withInput++
			}
		}
		return lines, withInput
	}
	allow := Record{Allow: true, Status: 200, View: policy.NewView(req), Identity: id}
	deny := Record{Status: 403, Reason: "insufficient_scope", View: policy.NewView(req), Identity: id}
	shadow := Record{Allow: true, Shadow: true, Status: 403, Reason: "insufficient_scope", View: policy.NewView(req), Identity: id}
	if lines, in := count(0, 50, allow); lines != 50 || in != 0 {
		t.Errorf("rate 0, allowed: %d lines, %d with input; want 50, 0", lines, in)
	}
	for name, rec := range map[string]Record{"refused": deny, "shadow": shadow} {
		if lines, in := count(0, 50, rec); lines != 50 || in != 50 {
			t.Errorf("rate 0, %s: %d lines, %d with input; want 50, 50", name, lines, in)
		}
	}
	if lines, in := count(0.5, 2000, allow); lines != 2000 || in < 800 || in > 1200 {
		t.Errorf("rate 0.5, allowed: %d of %d lines with input; want about half", in, lines)
	}
	if _, in := count(1, 50, allow); in != 50 {
		t.Errorf("rate 1, allowed: %d of 50 lines with input", in)
	}
}
