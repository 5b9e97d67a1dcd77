package routes

import (
	"fmt"
	"strings"
	"testing"
)

func prot(name string) map[string]string { return map[string]string{"route": name} }

func exact(v string) PathMatch  { return PathMatch{Kind: PathExact, Value: v} }
func prefix(v string) PathMatch { return PathMatch{Kind: PathPrefix, Value: v} }
func sep(v string) PathMatch    { return PathMatch{Kind: PathSeparatedPrefix, Value: v} }
func regex(v string) PathMatch  { return PathMatch{Kind: PathRegex, Value: v} }

func mustTable(t testing.TB, vhosts ...VirtualHost) *Table {
	t.Helper()
	tb, err := New(vhosts)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func name(m *Matched) string {
	if m == nil {
		return "<none>"
	}
	return m.VirtualHost + "/" + m.Name
}

// Virtual hosts are chosen as Envoy's RouteMatcher::findVirtualHost does.
func TestVirtualHostSelection(t *testing.T) {
	any := func(vh string) []Route { return []Route{{Name: vh, Path: prefix("/"), Extensions: prot(vh)}} }
	tb := mustTable(t,
		VirtualHost{Name: "exact", Domains: []string{"API.example.com", "api.example.com:8443"}, Routes: any("exact")},
		VirtualHost{Name: "suffix", Domains: []string{"*.example.com"}, Routes: any("suffix")},
		VirtualHost{Name: "longer-suffix", Domains: []string{"*-internal.example.com"}, Routes: any("longer-suffix")},
		VirtualHost{Name: "prefix", Domains: []string{"legacy.*"}, Routes: any("prefix")},
		VirtualHost{Name: "default", Domains: []string{"*"}, Routes: any("default")},
	)
	for host, want := range map[string]string{
		"api.example.com":             "exact",   // domains compare without case
		"API.EXAMPLE.COM":             "exact",   // and so does the authority
		"api.example.com:8443":        "exact",   // host:port as configured
		"api.example.com:443":         "default", // a port is part of the authority: neither the name nor *.example.com
		"orders.example.com":          "suffix",
		"orders-internal.example.com": "longer-suffix", // the longest suffix wins
		".example.com":                "default",       // a wildcard stands for at least one character
		"example.com":                 "default",
		"legacy.example.org":          "prefix",
		"legacy.":                     "default",
		"legacy.example.com":          "suffix", // suffix wildcards before prefix wildcards
		"other.test":                  "default",
	} {
		if got := tb.Match(host, "/", "GET", nil); got == nil || got.VirtualHost != want {
			t.Errorf("%q: %s, want virtual host %s", host, name(got), want)
		}
	}
	noDefault := mustTable(t, VirtualHost{Name: "a", Domains: []string{"a.test"}, Routes: any("a")})
	if got := noDefault.Match("b.test", "/", "GET", nil); got != nil {
		t.Errorf("no virtual host serves b.test, got %s", name(got))
	}
	if got := noDefault.Match("", "/", "GET", nil); got != nil {
		t.Errorf("no authority, got %s", name(got))
	}
	onlyDefault := mustTable(t, VirtualHost{Name: "d", Domains: []string{"*"}, Routes: any("d")})
	if got := onlyDefault.Match("", "/", "GET", nil); got == nil {
		t.Error("a table with only * serves a request without authority (Envoy's fast path)")
	}
}

// Within a virtual host the first route, in order, whose matchers hold wins, whatever the
// index does to find candidates.
func TestRouteSelection(t *testing.T) {
	yes, no := true, false
	_ = no
	routes := []Route{
		{Name: "admin", Path: exact("/orders/admin"), Extensions: prot("admin")},
		{Name: "v2", Path: sep("/orders"), Headers: []HeaderMatch{{Name: "x-api-version", Kind: StringExact, Value: "2"}}, Extensions: prot("v2")},
		{Name: "write", Path: sep("/orders"), Methods: []string{"POST", "PUT"}, Extensions: prot("write")},
		{Name: "items", Path: regex("/items/[0-9]+(/reviews)?"), Extensions: prot("items")},
		{Name: "read", Path: sep("/orders"), Extensions: prot("read")},
		{Name: "reports", Path: PathMatch{Kind: PathPrefix, Value: "/Reports/", IgnoreCase: true}, Extensions: prot("reports")},
		{Name: "beta", Path: prefix("/beta/"), Headers: []HeaderMatch{
			{Name: "x-beta", Kind: StringPresent, Present: yes},
			{Name: "user-agent", Kind: StringContains, Value: "BOT", IgnoreCase: true, Invert: true},
		}, Extensions: prot("beta")},
		{Name: "health", Path: exact("/healthz")},
		{Name: "rest", Path: prefix("/"), Extensions: prot("rest")},
	}
	tb := mustTable(t, VirtualHost{Name: "api", Domains: []string{"*"}, Routes: routes})
	tests := []struct {
		method, path string
		headers      map[string]string
		want         string
	}{
		{"GET", "/orders/admin", nil, "admin"},
		{"GET", "/orders/admin?x=1", nil, "admin"}, // the query is not part of the path
		{"GET", "/orders/admin/", nil, "read"},     // exact is exact
		{"GET", "/orders", map[string]string{"x-api-version": "2"}, "v2"},
		{"POST", "/orders/1", map[string]string{"x-api-version": "2"}, "v2"}, // first match, not most specific
		{"POST", "/orders/1", nil, "write"},
		{"PATCH", "/orders/1", nil, "read"},
		{"GET", "/ordersx", nil, "rest"}, // a segment prefix takes whole segments only
		{"GET", "/Orders", nil, "rest"},  // case-sensitive by default
		{"GET", "/items/12", nil, "items"},
		{"GET", "/items/12/reviews", nil, "items"},
		{"GET", "/items/12/reviewsx", nil, "rest"}, // the regex matches the whole path
		{"GET", "/items/x", nil, "rest"},
		{"GET", "/reports/q1", nil, "reports"},
		{"GET", "/REPORTS/q1", nil, "reports"},
		{"GET", "/reports", nil, "rest"},
		{"GET", "/beta/x", map[string]string{"x-beta": ""}, "rest"}, // no user-agent: an inverted value matcher still needs the header
		{"GET", "/beta/x", map[string]string{"x-beta": "", "user-agent": "curl"}, "beta"},
		{"GET", "/beta/x", map[string]string{"x-beta": "1", "user-agent": "GoogleBot"}, "rest"},
		{"GET", "/beta/x", map[string]string{"x-beta": "1", "user-agent": "curl"}, "beta"},
		{"GET", "/beta/x", nil, "rest"}, // x-beta absent
		{"GET", "/healthz#frag", nil, "health"},
		{"GET", "*", nil, "<none>"}, // OPTIONS * has no path to match
	}
	for _, tt := range tests {
		got := tb.Match("api.example.com", tt.path, tt.method, tt.headers)
		gotName := "<none>"
		if got != nil {
			gotName = got.Name
		}
		if gotName != tt.want {
			t.Errorf("%s %s %v: route %s, want %s", tt.method, tt.path, tt.headers, gotName, tt.want)
		}
	}
	if m := tb.Match("x", "/healthz", "GET", nil); m == nil || !m.Public() {
		t.Errorf("health: %+v, want a public route", m)
	}
	if m := tb.Match("x", "/orders", "GET", nil); m.Public() || m.Extensions["route"] != "read" {
		t.Errorf("read: %+v, want its extensions", m)
	}
}

// Header matchers follow Envoy's HeaderUtility::matchHeaders, missing headers included.
func TestHeaderMatchers(t *testing.T) {
	tests := []struct {
		h    HeaderMatch
		val  *string
		want bool
	}{
		{HeaderMatch{Kind: StringExact, Value: "a"}, ptr("a"), true},
		{HeaderMatch{Kind: StringExact, Value: "a"}, ptr("A"), false},
		{HeaderMatch{Kind: StringExact, Value: "a", IgnoreCase: true}, ptr("A"), true},
		{HeaderMatch{Kind: StringExact, Value: "k", IgnoreCase: true}, ptr("\u212a"), false}, // Kelvin sign: ASCII folding only
		{HeaderMatch{Kind: StringPrefix, Value: "gold"}, ptr("gold+"), true},
		{HeaderMatch{Kind: StringSuffix, Value: "-eu"}, ptr("west-eu"), true},
		{HeaderMatch{Kind: StringSuffix, Value: "-EU", IgnoreCase: true}, ptr("west-eu"), true},
		{HeaderMatch{Kind: StringContains, Value: "Bot", IgnoreCase: true}, ptr("xxBOTxx"), true},
		{HeaderMatch{Kind: StringRegex, Value: "[a-z]{3}-[0-9]+"}, ptr("abc-1"), true},
		{HeaderMatch{Kind: StringRegex, Value: "[a-z]{3}-[0-9]+"}, ptr("abc-1x"), false}, // whole value
		{HeaderMatch{Kind: StringExact, Value: "a", Invert: true}, ptr("b"), true},
		{HeaderMatch{Kind: StringExact, Value: "a", Invert: true}, nil, false}, // missing never matches a value matcher
		{HeaderMatch{Kind: StringExact, Value: "a"}, nil, false},
		{HeaderMatch{Kind: StringPresent, Present: true}, ptr(""), true},
		{HeaderMatch{Kind: StringPresent, Present: true}, nil, false},
		{HeaderMatch{Kind: StringPresent, Present: false}, nil, true},
		{HeaderMatch{Kind: StringPresent, Present: false}, ptr("1"), false},
		{HeaderMatch{Kind: StringPresent, Present: true, Invert: true}, nil, true},
		{HeaderMatch{Kind: StringPresent, Present: false, Invert: true}, nil, false},
		{HeaderMatch{Kind: StringPresent, Present: false, Invert: true}, ptr("1"), true},
	}
	for i, tt := range tests {
		tt.h.Name = "x-h"
		tb := mustTable(t, VirtualHost{Name: "v", Domains: []string{"*"}, Routes: []Route{{Name: "r", Path: prefix("/"), Headers: []HeaderMatch{tt.h}}}})
		hs := map[string]string{}
		if tt.val != nil {
			hs["x-h"] = *tt.val
		}
		if got := tb.Match("h", "/", "GET", hs) != nil; got != tt.want {
			t.Errorf("%d: %+v on %v: %v, want %v", i, tt.h, hs, got, tt.want)
		}
	}
}

func ptr(s string) *string { return &s }

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		vhosts []VirtualHost
		want   string
	}{
		{[]VirtualHost{{Name: "a", Domains: []string{"x.test"}}, {Name: "b", Domains: []string{"X.test"}}}, `virtual host "b": domain "x.test" is already served by virtual host "a"`},
		{[]VirtualHost{{Name: "a", Domains: []string{"*"}, Routes: []Route{{Name: "r", Path: regex("(")}}}}, `virtual host "a": route "r": regex "("`},
		{[]VirtualHost{{Name: "a", Domains: []string{"*"}, Routes: []Route{{Name: "r", Path: prefix("x")}}}}, `route "r": path "x" must start with /`},
		{[]VirtualHost{{Name: "a", Domains: []string{"*"}, Routes: []Route{{Name: "r", Path: prefix("/"), Headers: []HeaderMatch{{Name: "x"}}}}}}, `route "r": header "x": no matcher`},
		{[]VirtualHost{{Name: "a", Domains: []string{"*"}, Routes: []Route{{Name: "r"}}}}, `route "r": no path matcher`},
	} {
		if _, err := New(tc.vhosts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New = %v, want an error containing %q", err, tc.want)
		}
	}
}

// bigTable is n routes: vhosts virtual hosts (one of them "*.example.com"), each with its
// routes over distinct first segments, exact paths, methods and a header, and a catch-all
// last; the request for the last-but-one route of the last virtual host is the worst case.
func bigTable(tb testing.TB, n, vhosts int) (*Table, string, string) {
	per := n / vhosts
	var in []VirtualHost
	for v := 0; v < vhosts; v++ {
		vh := VirtualHost{Name: fmt.Sprintf("vh%d", v), Domains: []string{fmt.Sprintf("api%d.example.com", v)}}
		if v == vhosts-1 {
			vh.Domains = append(vh.Domains, "*.example.org")
		}
		for r := 0; r < per-1; r++ {
			route := Route{Name: fmt.Sprintf("r%d", r), Extensions: prot(fmt.Sprintf("r%d", r))}
			switch r % 4 {
			case 0:
				route.Path = sep(fmt.Sprintf("/svc%d", r))
			case 1:
				route.Path = exact(fmt.Sprintf("/svc%d/item", r))
			case 2:
				route.Path, route.Methods = sep(fmt.Sprintf("/svc%d", r)), []string{"POST", "PUT"}
			case 3:
				route.Path = prefix(fmt.Sprintf("/svc%d/", r))
				route.Headers = []HeaderMatch{{Name: "x-api-version", Kind: StringExact, Value: "2"}}
			}
			vh.Routes = append(vh.Routes, route)
		}
		vh.Routes = append(vh.Routes, Route{Name: "rest", Path: prefix("/"), Extensions: prot("rest")})
		in = append(in, vh)
	}
	return mustTable(tb, in...), "Shop.example.ORG", fmt.Sprintf("/svc%d/item?x=1", per-2-((per-2)%4)+1)
}

// A Match allocates nothing, whatever it has to fold or look up.
func TestMatchAllocatesNothing(t *testing.T) {
	tb, host, path := bigTable(t, 1000, 10)
	headers := map[string]string{"x-api-version": "2", "user-agent": "curl"}
	if m := tb.Match(host, path, "GET", headers); m == nil || m.Name == "rest" {
		t.Fatalf("the worst-case request matched %s", name(m))
	}
	if n := testing.AllocsPerRun(1000, func() { tb.Match(host, path, "GET", headers) }); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
	rx := mustTable(t, VirtualHost{Name: "v", Domains: []string{"*"}, Routes: []Route{{Name: "r", Path: regex("/items/[0-9]+"), Extensions: prot("r")}}})
	if n := testing.AllocsPerRun(1000, func() { rx.Match("h", "/items/42", "GET", nil) }); n != 0 {
		t.Errorf("a regex Match allocates %v times", n)
	}
}

// BenchmarkMatch is the route table's share of a Check: a table of 1,000 routes in 10
// virtual hosts, the request matching the last virtual host (a wildcard domain, an
// authority to fold) near the end of its routes; "flat" puts all 1,000 routes in one
// virtual host.
func BenchmarkMatch(b *testing.B) {
	for _, c := range []struct {
		name   string
		vhosts int
	}{{"1000-routes-10-vhosts", 10}, {"1000-routes-flat", 1}} {
		b.Run(c.name, func(b *testing.B) {
			tb, host, path := bigTable(b, 1000, c.vhosts)
			headers := map[string]string{"x-api-version": "2", "user-agent": "curl"}
			b.ReportAllocs()
			for b.Loop() {
				if tb.Match(host, path, "GET", headers) == nil {
					b.Fatal("no match")
				}
			}
		})
	}
}
