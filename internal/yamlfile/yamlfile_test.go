package yamlfile

import (
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	type doc struct {
		A int `yaml:"a"`
	}
	tests := []struct {
		in, wantErr string
		want        int
	}{
		{in: "a: 1\n", want: 1},
		{in: "", wantErr: "empty document"},
		{in: "b: 1\n", wantErr: "field b not found"},
		{in: "a: 1\n---\na: 2\n", wantErr: "more than one YAML document"},
		{in: "a: x\n", wantErr: "cannot unmarshal"},
	}
	for _, tt := range tests {
		var d doc
		err := Decode([]byte(tt.in), &d)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: err %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || d.A != tt.want {
			t.Errorf("%q: %+v %v", tt.in, d, err)
		}
	}
	if err := Decode(nil, &doc{}); !errors.Is(err, ErrEmpty) {
		t.Errorf("nil: %v", err)
	}
}

// Errors name the field at fault, in nested maps and lists, not only its line.
func TestDecodeNamesTheField(t *testing.T) {
	type issuer struct {
		Name       string   `yaml:"name"`
		Leeway     int      `yaml:"leeway"`
		Algorithms []string `yaml:"algorithms"`
		Ports      []int    `yaml:"ports"`
	}
	type doc struct {
		Listen  string   `yaml:"listen"`
		Issuers []issuer `yaml:"issuers"`
		Cache   struct {
			Max int `yaml:"max_entries"`
		} `yaml:"token_cache"`
	}
	tests := []struct{ in, want string }{
		{"token_cache:\n  max_entries: lots\n", "token_cache.max_entries: line 2: cannot unmarshal"},
		{"issuers:\n  - name: a\n  - name: b\n    leeway: soon\n", "issuers[1].leeway: line 4: cannot unmarshal"},
		{"issuers:\n  - name: a\n    colour: red\n", "issuers[0].colour: line 3: field colour not found"},
		{"issuers:\n  - ports:\n      - 1\n      - x\n", "issuers[0].ports[1]: line 4: cannot unmarshal"},
		{"issuers:\n  - ports: [1, x]\n", "issuers[0].ports: line 2: cannot unmarshal"},
		{"listen: [a]\n", "listen: line 1: cannot unmarshal"},
	}
	for _, tt := range tests {
		var d doc
		err := Decode([]byte(tt.in), &d)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err %v, want %q", tt.in, err, tt.want)
		}
	}
	// Two errors, one line each, each named.
	err := Decode([]byte("listen: [a]\ntoken_cache:\n  max_entries: x\n"), &doc{})
	if err == nil || !strings.Contains(err.Error(), "listen: line 1") || !strings.Contains(err.Error(), "\ntoken_cache.max_entries: line 3") {
		t.Errorf("two errors: %v", err)
	}
}
