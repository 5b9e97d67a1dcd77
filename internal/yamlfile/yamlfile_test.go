package yamlfile

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
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

// Errors speak of fields and kinds of value, never of Go types; a misspelt field suggests the
// nearest known one.
func TestDecodeExplains(t *testing.T) {
	type issuer struct {
		Name       string        `yaml:"name"`
		Leeway     time.Duration `yaml:"leeway"`
		Algorithms []string      `yaml:"algorithms"`
		Audiences  []string      `yaml:"audiences"`
	}
	type doc struct {
		Listen  string   `yaml:"listen"`
		Issuers []issuer `yaml:"issuers"`
		Cache   struct {
			Max *int `yaml:"max_entries"`
		} `yaml:"token_cache"`
		Watch bool `yaml:"watch"`
	}
	tests := []struct{ in, want string }{
		{"listn: x\n", `listn: line 1: field listn not found; did you mean "listen"?`},
		{"isuers: []\n", `isuers: line 1: field isuers not found; did you mean "issuers"?`},
		{"issuers:\n  - name: a\n    audience: [x]\n", `issuers[0].audience: line 3: field audience not found; did you mean "audiences"?`},
		{"issuers:\n  - name: a\n    colour: red\n", `field colour not found (known fields: name, leeway, algorithms, audiences)`},
		{"token_cache:\n  max_entires: 1\n", `did you mean "max_entries"?`},
		{"issuers:\n  - leeway: ten\n", "issuers[0].leeway: line 2: cannot unmarshal `ten`: want a duration such as 30s"},
		{"token_cache:\n  max_entries: lots\n", "cannot unmarshal `lots`: want a whole number"},
		{"watch: maybe\n", "cannot unmarshal `maybe`: want true or false"},
		// The same typos inside one-line maps: the key on the line that the error names.
		{"token_cache: {max_entires: 1}\n", `token_cache.max_entires: line 1: field max_entires not found; did you mean "max_entries"?`},
		{"issuers: [{name: a, audience: [x]}]\n", `issuers[0].audience: line 1: field audience not found; did you mean "audiences"?`},
		{"issuers:\n  - {name: a, colour: red}\n", `issuers[0].colour: line 2: field colour not found (known fields: name, leeway, algorithms, audiences)`},
	}
	goType := regexp.MustCompile(`\b(yamlfile\.|time\.Duration|\bint\b|\bbool\b|\*int)`)
	for _, tt := range tests {
		var d doc
		err := Decode([]byte(tt.in), &d)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err %v, want %q", tt.in, err, tt.want)
			continue
		}
		if m := goType.FindString(err.Error()); m != "" {
			t.Errorf("%q: %v names a Go type (%s)", tt.in, err, m)
		}
	}
}
