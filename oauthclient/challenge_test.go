package oauthclient

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseChallenges(t *testing.T) {
	tests := []struct {
		in      string
		want    []Challenge
		wantErr string
	}{
		{`Bearer realm="scopegate"`, []Challenge{{Scheme: "Bearer", Params: map[string]string{"realm": "scopegate"}}}, ""},
		{`Bearer realm="scopegate", error="insufficient_user_authentication", acr_values="urn:a urn:b", max_age=300, DPoP algs="ES256 EdDSA"`,
			[]Challenge{
				{Scheme: "Bearer", Params: map[string]string{"realm": "scopegate", "error": "insufficient_user_authentication", "acr_values": "urn:a urn:b", "max_age": "300"}},
				{Scheme: "DPoP", Params: map[string]string{"algs": "ES256 EdDSA"}},
			}, ""},
		{`WWW-Authenticate: Bearer`, []Challenge{{Scheme: "Bearer"}}, ""},
		{`Basic, Bearer realm="x"`, []Challenge{{Scheme: "Basic"}, {Scheme: "Bearer", Params: map[string]string{"realm": "x"}}}, ""},
		{`Negotiate abc+/==, Bearer`, []Challenge{{Scheme: "Negotiate", Token68: "abc+/=="}, {Scheme: "Bearer"}}, ""},
		{`Bearer ERROR = "a\"b\\c" ,, scope=x`, []Challenge{{Scheme: "Bearer", Params: map[string]string{"error": `a"b\c`, "scope": "x"}}}, ""},
		{`Bearer realm="x", realm="y"`, nil, "given twice"},
		{`Bearer realm="x`, nil, "unterminated"},
		{"Bearer realm=\"a\nb\"", nil, "control character"},
		{`Bearer realm=`, []Challenge{{Scheme: "Bearer", Token68: "realm="}}, ""}, // a token68, by the grammar
		{`Bearer a="b", realm=`, nil, "expected a parameter value"},
		{`Bearer realm="x" error="y"`, nil, "expected ','"},
		{`"Bearer"`, nil, "expected an auth-scheme"},
		{``, nil, "no challenge"},
	}
	for _, tt := range tests {
		got, err := ParseChallenges(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: err %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: got %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseStepUp(t *testing.T) {
	five := 5 * time.Minute
	su, err := ParseStepUp(`Bearer realm="scopegate", DPoP algs="ES256", error="insufficient_user_authentication", error_description="more", acr_values="urn:mfa urn:hwk", max_age="300", resource_metadata="https://api/.well-known/oauth-protected-resource"`)
	if err != nil {
		t.Fatal(err)
	}
	want := &StepUp{Scheme: "DPoP", ACRValues: []string{"urn:mfa", "urn:hwk"}, MaxAge: &five, ResourceMetadata: "https://api/.well-known/oauth-protected-resource", Description: "more"}
	if !reflect.DeepEqual(su, want) {
		t.Errorf("got %+v, want %+v", su, want)
	}
	for in, wantErr := range map[string]string{
		`Bearer realm="scopegate", error="insufficient_scope", scope="a"`:     `error="insufficient_scope"`,
		`Bearer realm="scopegate"`:                                            "does not ask for step-up",
		`Bearer error="insufficient_user_authentication"`:                     "nothing to ask for",
		`Bearer error="insufficient_user_authentication", max_age="5m"`:       "max_age",
		`Bearer error="insufficient_user_authentication", max_age="-1"`:       "max_age",
		`Bearer error="insufficient_user_authentication", acr_values="a", x=`: "parameter value",
	} {
		_, err := ParseStepUp(in)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: err %v, want %q", in, err, wantErr)
		}
		if wantErr == "does not ask for step-up" && !errors.Is(err, ErrNoStepUp) {
			t.Errorf("%q: %v is not ErrNoStepUp", in, err)
		}
	}
}
