package decisionlog

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestLogLines(t *testing.T) {
	var out bytes.Buffer
	l := New(&out, 0, 0)
	l.Log(&Record{Time: time.Unix(1, 0), Route: "orders-read", Method: "GET", Path: "/orders/\"x\"\n\xff", Allow: true, Status: 200})
	l.Log(&Record{Time: time.Unix(2, 0), Route: "admin", Allow: false, Status: 403, Reason: "insufficient_scope", MissingScopes: []string{"admin", "x"}, Revision: "abc", Duration: 1500 * time.Microsecond})
	l.Log(&Record{Time: time.Unix(3, 0), Allow: true, Shadow: true, Status: 403, Reason: "client_not_allowed"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2 (the sampled-out allow dropped): %q", len(lines), out.String())
	}
	var deny map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &deny); err != nil {
		t.Fatalf("line 1 is not JSON: %v: %s", err, lines[0])
	}
	if deny["reason"] != "insufficient_scope" || deny["status"] != 403.0 || deny["duration_us"] != 1500.0 ||
		deny["policy_revision"] != "abc" || len(deny["missing_scopes"].([]any)) != 2 || deny["decision_id"] == "" {
		t.Fatalf("deny line: %v", deny)
	}
	var shadow map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &shadow); err != nil || shadow["shadow"] != true || shadow["allow"] != true {
		t.Fatalf("shadow line: %v %v", shadow, err)
	}

	out.Reset()
	l = New(&out, 1, 0)
	l.Log(&Record{Time: time.Unix(1, 0), Path: "/a\"b\\\x01\xff", Allow: true, Status: 200})
	_ = l.Close()
	var rec map[string]any
	if err := json.Unmarshal(out.Bytes(), &rec); err != nil {
		t.Fatalf("escaping: %v: %s", err, out.String())
	}
	if rec["path"] != "/a\"b\\\x01\ufffd" {
		t.Fatalf("path = %q", rec["path"])
	}
}
