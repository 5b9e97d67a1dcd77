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
