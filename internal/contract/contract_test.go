package contract

import (
	"strings"
	"testing"
	"time"
)

func TestMaxAge(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"300", 300, true}, {"0", 0, true}, {"31622400", MaxMaxAge, true},
		{"31622401", 0, false}, {"", 0, false}, {"-1", 0, false}, {"+5", 0, false}, {"5m", 0, false},
		{" 5", 0, false}, {"1e3", 0, false}, {"999999999", 0, false}, {"3.5", 0, false},
	} {
		got, ok := ParseMaxAge(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("ParseMaxAge(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	if got := FormatMaxAge(5 * time.Minute); got != "300" {
		t.Errorf("FormatMaxAge(5m) = %q", got)
	}
}

func TestACRValues(t *testing.T) {
	long := strings.Repeat("a", 257)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"urn:mfa", true}, {"urn:mfa urn:hwk", true}, {"1 2 3", true}, {"a!#$%&'()*+,-./:;<=>?@[]^_`{|}~", true},
		{"", false}, {" urn:mfa", false}, {"urn:mfa ", false}, {"urn:mfa  urn:hwk", false},
		{`urn:"mfa"`, false}, {`urn\mfa`, false}, {"urn:mfa\r\nx: 1", false}, {"urn:mfa\turn:hwk", false},
		{"é", false}, {"\x00", false}, {"\x7f", false}, {long, false}, {"a " + long[1:], true},
	} {
		if got := ValidACRValues(tc.in); got != tc.ok {
			t.Errorf("ValidACRValues(%q) = %v, want %v", tc.in, got, tc.ok)
		}
		if single := !strings.Contains(tc.in, " "); single {
			if got := ValidACR(tc.in); got != tc.ok {
				t.Errorf("ValidACR(%q) = %v, want %v", tc.in, got, tc.ok)
			}
		}
	}
	for _, tc := range []struct {
		list, acr string
		want      bool
	}{
		{"urn:mfa urn:hwk", "urn:mfa", true}, {"urn:mfa urn:hwk", "urn:hwk", true}, {"urn:mfa", "urn:mfa", true},
		{"urn:mfa urn:hwk", "urn", false}, {"urn:mfa urn:hwk", "urn:mf", false}, {"urn:mfa urn:hwk", "urn:mfa urn:hwk", false},
		{"urn:mfa urn:hwk", "", false}, {"urn:mfa urn:hwk", "URN:MFA", false}, {"urn:mfax urn:hwk", "urn:mfa", false},
		{"a b", "b", true}, {"ab b", "b", true}, {"b ab", "a", false}, {"", "a", false},
	} {
		if got := HasACR(tc.list, tc.acr); got != tc.want {
			t.Errorf("HasACR(%q, %q) = %v, want %v", tc.list, tc.acr, got, tc.want)
		}
	}
}

// HasACR finds acr exactly when it is one of the list's space-separated values.
func FuzzHasACR(f *testing.F) {
	for _, s := range [][2]string{{"urn:mfa urn:hwk", "urn:mfa"}, {" a", "a"}, {"a  b", "b"}, {"a\x00", "a"}, {"ab b", "b"}, {"a", "a b"}, {"aa a", "a"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, list, acr string) {
		want := false
		for _, v := range strings.Split(list, " ") {
			want = want || (v == acr && acr != "" && !strings.Contains(acr, " "))
		}
		if got := HasACR(list, acr); got != want {
			t.Fatalf("HasACR(%q, %q) = %v, want %v", list, acr, got, want)
		}
	})
}
