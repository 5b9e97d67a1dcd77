package contract

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// What the control plane encodes, authz parses back: the two halves agree by construction.
func TestParseRoundTrip(t *testing.T) {
	in := Route{Name: "refunds", Scopes: []string{"orders:write", "refunds"}, Mode: ModeShadow, Binding: BindingRequired,
		ACRValues: []string{"urn:mfa", "urn:hwk"}, MaxAge: 5 * time.Minute, MetadataURL: "https://api.example.com/.well-known/oauth-protected-resource"}
	r, err := Parse(in.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Named || r.Name != in.Name || !slices.Equal(r.ScopeList(), in.Scopes) || !r.Shadow || r.Mode != ModeShadow || !r.BindingRequired ||
		r.ACRValues != "urn:mfa urn:hwk" || r.MaxAge != "300" || r.MaxAgeSeconds != 300 || r.MetadataURL != in.MetadataURL || !r.StepUp() {
		t.Errorf("Parse = %+v", r)
	}
	if r.DecisionOnly() {
		t.Error("binding and resource_metadata are more than a decision depends on")
	}
	plain, err := Parse(Route{Name: "orders", Scopes: []string{"orders:read"}}.Encode())
	if err != nil || plain.Shadow || plain.BindingRequired || plain.StepUp() || !plain.DecisionOnly() {
		t.Errorf("plain route: %+v, %v", plain, err)
	}
}

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		name     string
		ext      map[string]string
		invalid  bool
		metadata string
		named    bool
	}{
		{name: "none", ext: nil},
		{name: "named, empty", ext: map[string]string{ExtRoute: ""}, named: true},
		{name: "empty acr_values", ext: map[string]string{ExtACRValues: ""}, invalid: true},
		{name: "max_age with a unit", ext: map[string]string{ExtMaxAge: "5m"}, invalid: true},
		{name: "max_age over a year", ext: map[string]string{ExtMaxAge: "99999999"}, invalid: true},
		{name: "max_age 0", ext: map[string]string{ExtMaxAge: "0"}},
		{name: "metadata over http", ext: map[string]string{ExtResourceMetadata: "http://a/m"}, metadata: "http://a/m"},
		{name: "metadata with a quote", ext: map[string]string{ExtResourceMetadata: `https://a/"m`}},
		{name: "metadata with a space", ext: map[string]string{ExtResourceMetadata: "https://a/ m"}},
		{name: "metadata not http", ext: map[string]string{ExtResourceMetadata: "javascript:x"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse(tt.ext)
			if (err != nil) != tt.invalid || (err != nil && !errors.Is(err, ErrInvalidRoute)) {
				t.Errorf("error %v, want invalid %v", err, tt.invalid)
			}
			if r.MetadataURL != tt.metadata || r.Named != tt.named {
				t.Errorf("Parse = %+v", r)
			}
		})
	}
	if r, _ := Parse(map[string]string{ExtMaxAge: "0"}); !r.StepUp() || r.MaxAgeSeconds != 0 {
		t.Errorf("max_age 0 is a requirement: %+v", r)
	}
}

// Parse runs on every Check: it must not allocate.
func TestParseDoesNotAllocate(t *testing.T) {
	ext := Route{Name: "refunds", Scopes: []string{"a", "b"}, ACRValues: []string{"urn:mfa"}, MaxAge: time.Minute,
		MetadataURL: "https://api.example.com/m"}.Encode()
	if n := testing.AllocsPerRun(100, func() { _, _ = Parse(ext) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
