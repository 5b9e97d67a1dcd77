package bearer

import (
	"errors"
	"strings"
	"testing"

	"github.com/scopegate/scopegate/extauthz/denial"
)

func TestExtract(t *testing.T) {
	const tok = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
	tests := []struct {
		name        string
		req         Request
		want        string
		wantReason  string
		wantMissing bool
		wantScheme  Scheme
	}{
		{name: "dpop", req: Request{Authorization: []string{"DPoP " + tok}}, want: tok, wantScheme: SchemeDPoP},
		{name: "dpop case-insensitive", req: Request{Authorization: []string{"dpop " + tok}}, want: tok, wantScheme: SchemeDPoP},
		{name: "dpop scheme only", req: Request{Authorization: []string{"DPoP"}}, wantReason: "invalid_request"},
		{name: "bearer", req: Request{Authorization: []string{"Bearer " + tok}}, want: tok},
		{name: "scheme case-insensitive", req: Request{Authorization: []string{"bEaReR " + tok}}, want: tok},
		{name: "several spaces", req: Request{Authorization: []string{"Bearer   " + tok}}, want: tok},
		{name: "padding", req: Request{Authorization: []string{"Bearer abc+/=="}}, want: "abc+/=="},
		{name: "query without token", req: Request{Authorization: []string{"Bearer " + tok}, RawQuery: "a=1&token=2"}, want: tok},
		{name: "no header", req: Request{}, wantReason: "missing_token", wantMissing: true},
		{name: "empty header", req: Request{Authorization: []string{""}}, wantReason: "missing_token", wantMissing: true},
		{name: "basic scheme", req: Request{Authorization: []string{"Basic dXNlcjpwYXNz"}}, wantReason: "missing_token", wantMissing: true},
		{name: "scheme only", req: Request{Authorization: []string{"Bearer"}}, wantReason: "invalid_request"},
		{name: "scheme and space", req: Request{Authorization: []string{"Bearer "}}, wantReason: "invalid_request"},
		{name: "two tokens", req: Request{Authorization: []string{"Bearer a b"}}, wantReason: "invalid_request"},
		{name: "trailing space", req: Request{Authorization: []string{"Bearer abc "}}, wantReason: "invalid_request"},
		{name: "tab separator", req: Request{Authorization: []string{"Bearer\tabc"}}, wantReason: "invalid_request"},
		{name: "bad character", req: Request{Authorization: []string{"Bearer ab$c"}}, wantReason: "invalid_request"},
		{name: "padding in the middle", req: Request{Authorization: []string{"Bearer ab=c"}}, wantReason: "invalid_request"},
		{name: "only padding", req: Request{Authorization: []string{"Bearer =="}}, wantReason: "invalid_request"},
		{name: "joined values", req: Request{Authorization: []string{"Bearer a,Bearer b"}}, wantReason: "invalid_request"},
		{name: "two values", req: Request{Authorization: []string{"Bearer a", "Bearer b"}}, wantReason: "invalid_request"},
		{name: "token in query too", req: Request{Authorization: []string{"Bearer " + tok}, RawQuery: "x=1&access_token=" + tok}, wantReason: "invalid_request"},
		{name: "token only in query", req: Request{RawQuery: "access_token=" + tok}, wantReason: "invalid_request"},
		{name: "encoded query name", req: Request{Authorization: []string{"Bearer " + tok}, RawQuery: "access%5Ftoken=x"}, wantReason: "invalid_request"},
		{name: "malformed scheme", req: Request{Authorization: []string{"Bea(rer abc"}}, wantReason: "invalid_request"},
		{name: "too large", req: Request{Authorization: []string{"Bearer " + strings.Repeat("a", DefaultMaxBytes+1)}}, wantReason: "token_too_large"},
		{name: "at the limit", req: Request{Authorization: []string{"Bearer " + strings.Repeat("a", DefaultMaxBytes)}}, want: strings.Repeat("a", DefaultMaxBytes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, scheme, err := Extract(tt.req, 0)
			if tt.wantReason == "" {
				if err != nil || got != tt.want || scheme != tt.wantScheme {
					t.Fatalf("Extract = %q, %v, %v; want %q %v", got, scheme, err, tt.want, tt.wantScheme)
				}
				return
			}
			var e *denial.Denial
			if !errors.As(err, &e) {
				t.Fatalf("Extract = %q, %v; want a *denial.Denial %s", got, err, tt.wantReason)
			}
			if e.Reason != tt.wantReason || (e.Kind == denial.Unauthorized) != tt.wantMissing {
				t.Fatalf("error = %+v; want reason %s missing %v", e, tt.wantReason, tt.wantMissing)
			}
			if got != "" {
				t.Fatalf("a token came back with an error: %q", got)
			}
			if strings.Contains(e.Error(), tok) {
				t.Fatal("the error echoes the token")
			}
		})
	}
}
