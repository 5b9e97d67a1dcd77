package jsonenc

import (
	"encoding/json"
	"testing"
)

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "tab\tnew\nline\x00nul\x1f", "é 日本 🙂", "bad \xff utf-8 \xc3", "\u2028"} {
		got := AppendString([]byte("x"), s)
		var back string
		if err := json.Unmarshal(got[1:], &back); err != nil {
			t.Fatalf("%q: %s is not JSON: %v", s, got[1:], err)
		}
		want, _ := json.Marshal(s) // encoding/json also maps invalid UTF-8 to U+FFFD
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q: round trip %q, want %q", s, back, wantBack)
		}
	}
	if got := string(AppendStrings(nil, []string{"a", `b"`})); got != `["a","b\""]` {
		t.Errorf("AppendStrings: %s", got)
	}
	if got := string(AppendStrings(nil, nil)); got != `[]` {
		t.Errorf("AppendStrings(nil): %s", got)
	}
}
