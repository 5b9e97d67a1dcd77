package routes_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	xdsconfig "github.com/scopegate/scopegate/controlplane/config"
	"github.com/scopegate/scopegate/controlplane/translate"
	"github.com/scopegate/scopegate/controlplane/translate/names"
	authzconfig "github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/routes"
)

// The differential test: for every request of a generated set, the route Envoy would take
// in the RouteConfiguration our translator emits, and the route authz's table matches from
// the same config, are the same route carrying the same route contract. The Envoy side is
// written here, over the protos, following Envoy's RouteMatcher and HeaderUtility, and
// shares no code with package routes or with the config-to-table conversion.

// envoyChoice is what Envoy does with a request: the route taken, and what ext_authz sees.
type envoyChoice struct {
	route    string // "" when no route matches
	public   bool   // ext_authz disabled on the route
	document string // a direct response's body
	ext      map[string]string
}

func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + 32
		}
		return r
	}, s)
}

type envoyMatcher struct{ regexes map[string]*regexp.Regexp }

// fullMatch is RE2::FullMatch.
func (e *envoyMatcher) fullMatch(expr, s string) bool {
	re, ok := e.regexes[expr]
	if !ok {
		re = regexp.MustCompile(`^(?:` + expr + `)$`)
		e.regexes[expr] = re
	}
	return re.MatchString(s)
}

// pickVirtualHost scores every domain of every virtual host: an exact domain beats any
// "*suffix" (longer first), which beats any "prefix*" (longer first), which beats "*"; a
// wildcard stands for at least one character. No authority: only a lone "*" host serves.
func pickVirtualHost(rc *route.RouteConfiguration, authority string) *route.VirtualHost {
	host := asciiLower(authority)
	var best *route.VirtualHost
	bestClass, bestLen := -1, -1
	onlyStar := true
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			d = asciiLower(d)
			class, n := -1, 0
			switch {
			case d == "*":
				class = 0
			case strings.HasPrefix(d, "*"):
				onlyStar = false
				if suf := d[1:]; len(suf) < len(host) && strings.HasSuffix(host, suf) {
					class, n = 2, len(suf)
				}
			case strings.HasSuffix(d, "*"):
				onlyStar = false
				if pre := d[:len(d)-1]; len(pre) < len(host) && strings.HasPrefix(host, pre) {
					class, n = 1, len(pre)
				}
			default:
				onlyStar = false
				if d == host {
					class = 3
				}
			}
			if class > bestClass || (class == bestClass && n > bestLen) {
				best, bestClass, bestLen = vh, class, n
			}
		}
	}
	if authority == "" && !onlyStar {
		return nil
	}
	if bestClass < 0 {
		return nil
	}
	return best
}

func (e *envoyMatcher) stringMatch(sm *matcher.StringMatcher, v string) bool {
	fold := func(s string) string {
		if sm.GetIgnoreCase() {
			return asciiLower(s)
		}
		return s
	}
	switch p := sm.GetMatchPattern().(type) {
	case *matcher.StringMatcher_Exact:
		return fold(v) == fold(p.Exact)
	case *matcher.StringMatcher_Prefix:
		return strings.HasPrefix(fold(v), fold(p.Prefix))
	case *matcher.StringMatcher_Suffix:
		return strings.HasSuffix(fold(v), fold(p.Suffix))
	case *matcher.StringMatcher_Contains:
		return strings.Contains(fold(v), fold(p.Contains))
	case *matcher.StringMatcher_SafeRegex:
		return e.fullMatch(p.SafeRegex.GetRegex(), v)
	}
	panic(fmt.Sprintf("string matcher %T", sm.GetMatchPattern()))
}

// headerMatches is HeaderUtility::matchHeaders for the matchers translate emits.
func (e *envoyMatcher) headerMatches(hm *route.HeaderMatcher, method string, headers map[string]string) bool {
	v, ok := headers[hm.GetName()]
	if hm.GetName() == ":method" {
		v, ok = method, true
	}
	pm, isPresent := hm.GetHeaderMatchSpecifier().(*route.HeaderMatcher_PresentMatch)
	if !ok {
		if hm.GetInvertMatch() {
			return isPresent && pm.PresentMatch
		}
		return isPresent && !pm.PresentMatch
	}
	var m bool
	switch s := hm.GetHeaderMatchSpecifier().(type) {
	case *route.HeaderMatcher_PresentMatch:
		m = s.PresentMatch
	case *route.HeaderMatcher_StringMatch:
		m = e.stringMatch(s.StringMatch, v)
	default:
		panic(fmt.Sprintf("header matcher %T", s))
	}
	return m != hm.GetInvertMatch()
}

func (e *envoyMatcher) pathMatches(rm *route.RouteMatch, path string) bool {
	sensitive := rm.GetCaseSensitive() == nil || rm.GetCaseSensitive().GetValue()
	cmp := func(s string) string {
		if sensitive {
			return s
		}
		return asciiLower(s)
	}
	switch p := rm.GetPathSpecifier().(type) {
	case *route.RouteMatch_Prefix:
		return strings.HasPrefix(cmp(path), cmp(p.Prefix))
	case *route.RouteMatch_Path:
		return cmp(path) == cmp(p.Path)
	case *route.RouteMatch_PathSeparatedPrefix:
		q, pp := cmp(path), cmp(p.PathSeparatedPrefix)
		return q == pp || strings.HasPrefix(q, pp+"/")
	case *route.RouteMatch_SafeRegex:
		return e.fullMatch(p.SafeRegex.GetRegex(), path) // case_sensitive does not apply
	}
	panic(fmt.Sprintf("path specifier %T", rm.GetPathSpecifier()))
}

// pick is the route Envoy takes for a request in rc.
func (e *envoyMatcher) pick(t *testing.T, rc *route.RouteConfiguration, authority, fullPath, method string, headers map[string]string) envoyChoice {
	vh := pickVirtualHost(rc, authority)
	if vh == nil {
		return envoyChoice{}
	}
	path, _, _ := strings.Cut(fullPath, "?")
	path, _, _ = strings.Cut(path, "#")
next:
	for _, r := range vh.GetRoutes() {
		if !e.pathMatches(r.GetMatch(), path) {
			continue
		}
		for _, hm := range r.GetMatch().GetHeaders() {
			if !e.headerMatches(hm, method, headers) {
				continue next
			}
		}
		c := envoyChoice{route: r.GetName()}
		if dr := r.GetDirectResponse(); dr != nil {
			c.document = dr.GetBody().GetInlineString()
			return c
		}
		var per extauthzv3.ExtAuthzPerRoute
		if err := r.GetTypedPerFilterConfig()[names.ExtAuthzFilter].UnmarshalTo(&per); err != nil {
			t.Fatalf("route %s: %v", r.GetName(), err)
		}
		c.public = per.GetDisabled()
		c.ext = per.GetCheckSettings().GetContextExtensions()
		return c
	}
	return envoyChoice{}
}

func tableChoice(m *routes.Matched) envoyChoice {
	if m == nil {
		return envoyChoice{}
	}
	c := envoyChoice{route: m.Name, public: m.Public(), ext: m.Extensions}
	if m.Document != nil {
		c.document = string(m.Document.Body)
	}
	return c
}

func sameChoice(a, b envoyChoice) bool {
	return a.route == b.route && a.public == b.public && a.document == b.document && maps.Equal(a.ext, b.ext)
}

// request is one generated request.
type request struct {
	host, path, method string
	headers            map[string]string
}

var (
	genHosts = []string{"api.example.com", "API.Example.COM", "api.example.com:8443", "api.example.com:443", "x.example.com",
		"ops-internal.example.com", "-internal.example.com", "example.com", ".example.com", "legacy.example.net", "legacy.",
		"leg.x", "shop.example.org", "SHOP.example.org", "other.test", "a.com", ""}
	genPaths = []string{"/", "/a", "/a/", "/a/b", "/a/b/c", "/ab", "/A", "/A/B", "/a/12", "/a/12/x", "/b/x", "/b", "/B/x",
		"/a?x=1", "/a/b?y=/a", "/a#frag", "/.well-known/oauth-protected-resource", "/x", "/orders", "/orders/admin",
		"/orders/admin/", "/ordersx", "/items/12", "/items/12/reviews", "/items/x", "/beta/", "/beta/x", "/Reports/q1",
		"/reports/q1", "/REPORTS", "/t/1", "/healthz", "/HEALTHZ", "/v1", "/v1/x", "/v2", "*"}
	genMethods = []string{"GET", "POST", "PUT", "DELETE", "PATCH"}
	genHeaders = map[string][]string{
		"x-api-version": {"2", "1", "22"}, "x-beta": {"", "1"}, "user-agent": {"curl/8", "GoogleBot", "bot"},
		"x-tenant": {"abc-12", "ABC-12", "ab-1"}, "x-tenant-tier": {"gold", "Gold+", "silver"},
		"x-region": {"west-eu", "eu-west", "-EU"}, "x-debug": {"1"}, "x-h": {"v", "V", "xv", "vx"},
	}
)

// generate makes n requests, half of them to the given hosts, the rest to genHosts.
func generate(rng *rand.Rand, hosts []string, n int) []request {
	names := make([]string, 0, len(genHeaders))
	for k := range genHeaders {
		names = append(names, k)
	}
	out := make([]request, n)
	for i := range out {
		host := genHosts[rng.IntN(len(genHosts))]
		if len(hosts) > 0 && rng.IntN(2) == 0 {
			host = hosts[rng.IntN(len(hosts))]
		}
		r := request{host: host, path: genPaths[rng.IntN(len(genPaths))],
			method: genMethods[rng.IntN(len(genMethods))], headers: map[string]string{}}
		for _, name := range names {
			if rng.IntN(3) == 0 {
				vals := genHeaders[name]
				r.headers[name] = vals[rng.IntN(len(vals))]
			}
		}
		out[i] = r
	}
	return out
}

// compare runs reqs through both sides for every listener of cfg; it returns how many
// requests each route took.
func compare(t *testing.T, cfg *xdsconfig.Config, reqs []request) map[string]int {
	t.Helper()
	fleets, err := translate.Build(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &envoyMatcher{regexes: map[string]*regexp.Regexp{}}
	taken := map[string]int{}
	for _, f := range cfg.Fleets {
		rcs := map[string]*route.RouteConfiguration{}
		for _, res := range fleets[f.Name].Resources[resource.RouteType] {
			rc := res.(*route.RouteConfiguration)
			rcs[rc.GetName()] = rc
		}
		for _, l := range f.Listeners {
			tb, err := routes.New(authzconfig.TableInputs(l.VirtualHosts))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range reqs {
				want := e.pick(t, rcs[l.Name], r.host, r.path, r.method, r.headers)
				got := tableChoice(tb.Match(r.host, r.path, r.method, r.headers))
				if !sameChoice(want, got) {
					t.Fatalf("%s %s %s %v:\n  Envoy (translated protos): %+v\n  authz's table:             %+v", r.method, r.host, r.path, r.headers, want, got)
				}
				taken[want.route]++
			}
		}
	}
	return taken
}

// hostsFor is an authority each domain of cfg serves, so generated requests reach its
// virtual hosts.
func hostsFor(cfg *xdsconfig.Config) []string {
	var hosts []string
	for _, f := range cfg.Fleets {
		for _, l := range f.Listeners {
			for _, vh := range l.VirtualHosts {
				for _, d := range vh.Domains {
					switch {
					case d == "*":
						hosts = append(hosts, "anything.test")
					case strings.HasPrefix(d, "*"):
						hosts = append(hosts, "w"+d[1:], "W"+strings.ToUpper(d[1:]))
					case strings.HasSuffix(d, "*"):
						hosts = append(hosts, d[:len(d)-1]+"z")
					default:
						hosts = append(hosts, d, strings.ToUpper(d))
					}
				}
			}
		}
	}
	return hosts
}

// TestDifferentialMatchersFile: the checked-in table of every matcher kind.
func TestDifferentialMatchersFile(t *testing.T) {
	cfg, err := xdsconfig.Load("../../controlplane/translate/testdata/in/matchers.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var reqs []request
	headerSets := []map[string]string{nil, {"x-api-version": "2"}, {"x-beta": "", "user-agent": "curl/8"},
		{"x-tenant": "abc-12", "x-tenant-tier": "gold", "x-region": "west-eu"}}
	for _, h := range append(hostsFor(cfg), genHosts...) {
		for _, p := range genPaths {
			for _, m := range []string{"GET", "POST"} {
				for _, hs := range headerSets {
					reqs = append(reqs, request{host: h, path: p, method: m, headers: hs})
				}
			}
		}
	}
	reqs = append(reqs, generate(rand.New(rand.NewPCG(1, 2)), hostsFor(cfg), 20000)...)
	taken := compare(t, cfg, reqs)
	for _, vh := range cfg.Fleets[0].Listeners[0].VirtualHosts {
		for _, r := range vh.Routes {
			if taken[r.Name] == 0 {
				t.Errorf("no generated request took route %q: the set does not exercise it", r.Name)
			}
		}
	}
}

// TestDifferentialGeneratedTables: random tables (overlapping prefixes of both kinds, exact
// paths, regexes, case-insensitive routes, methods, header matchers of every kind,
// wildcard and port-bearing domains, metadata routes) against random requests.
func TestDifferentialGeneratedTables(t *testing.T) {
	rng := rand.New(rand.NewPCG(22, 2026))
	total, matched := 0, 0
	for i := 0; i < 60; i++ {
		cfg := randomConfig(rng)
		if err := cfg.Validate(); err != nil {
			continue // the generator made something the schema refuses (a shadowed metadata path)
		}
		reqs := generate(rng, hostsFor(cfg), 1500)
		taken := compare(t, cfg, reqs)
		matched += len(reqs) - taken[""]
		total += len(reqs)
	}
	if total < 40*1500 || matched < total/10 {
		t.Fatalf("%d requests, %d matched: the generator is not exercising the tables", total, matched)
	}
}

func randomConfig(rng *rand.Rand) *xdsconfig.Config {
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	domains := []string{"api.example.com", "api.example.com:8443", "*.example.com", "*-internal.example.com", "*.com",
		"legacy.*", "leg.*", "*", "shop.example.org", "*.org"}
	rng.Shuffle(len(domains), func(i, j int) { domains[i], domains[j] = domains[j], domains[i] })
	f := false
	cfg := &xdsconfig.Config{Listen: ":18000", Admin: ":18001",
		Authz:     xdsconfig.Authz{Address: "127.0.0.1:9191", Timeout: 1e8, StatusOnError: 503, ConnectTimeout: 1e9},
		Upstreams: []xdsconfig.Upstream{{Name: "u", Endpoints: []string{"127.0.0.1:1"}, Timeout: 1e9, ConnectTimeout: 1e9}}}
	l := xdsconfig.Listener{Name: "l", Address: "0.0.0.0", Port: 8080}
	nv := 1 + rng.IntN(4)
	for v := 0; v < nv; v++ {
		vh := xdsconfig.VirtualHost{Name: fmt.Sprintf("vh%d", v)}
		for d := 0; d < 1+rng.IntN(2) && len(domains) > 0; d++ {
			vh.Domains, domains = append(vh.Domains, domains[0]), domains[1:]
		}
		if len(vh.Domains) == 0 {
			break
		}
		if rng.IntN(4) == 0 {
			vh.ResourceMetadata = &xdsconfig.ResourceMetadata{Resource: pick([]string{"https://api.example.com", "https://api.example.com/a"}),
				AuthorizationServers: []string{"https://idp.example.com"}, CacheMaxAge: 3600e9}
		}
		nr := 1 + rng.IntN(12)
		for r := 0; r < nr; r++ {
			rt := xdsconfig.Route{Name: fmt.Sprintf("vh%d-r%d", v, r), Upstream: "u", Mode: "enforce"}
			switch rng.IntN(4) {
			case 0:
				rt.Match.Prefix = pick([]string{"/", "/a", "/a/", "/a/b", "/ab", "/A", "/b/", "/orders", "/items/"})
			case 1:
				rt.Match.Path = pick([]string{"/", "/a", "/a/b", "/ab", "/A/B", "/orders/admin", "/healthz"})
			case 2:
				rt.Match.Regex = pick([]string{"/a/[0-9]+", "/(a|b)/.*", "/a.*", "/[a-z]+", "/items/[0-9]+(/reviews)?", "(?i)/a/B"})
			case 3:
				rt.Match.Prefix = pick([]string{"/beta/", "/t/", "/Reports/", "/v1"})
			}
			if rt.Match.Regex == "" && rng.IntN(3) == 0 {
				rt.Match.CaseSensitive = &f
			}
			if rng.IntN(3) == 0 {
				rt.Match.Methods = []string{pick(genMethods)}
				if rng.IntN(2) == 0 && rt.Match.Methods[0] != "GET" {
					rt.Match.Methods = append(rt.Match.Methods, "GET")
				}
			}
			for h := 0; h < rng.IntN(3); h++ {
				rt.Match.Headers = append(rt.Match.Headers, randomHeader(rng, h))
			}
			switch rng.IntN(6) {
			case 0:
				rt.Public, rt.Mode = true, ""
			case 1:
				rt.Mode, rt.Binding = "shadow", "required"
			default:
				rt.Scopes = []string{rt.Name + ":read"}
			}
			vh.Routes = append(vh.Routes, rt)
		}
		l.VirtualHosts = append(l.VirtualHosts, vh)
	}
	cfg.Fleets = []xdsconfig.Fleet{{Name: "f", Listeners: []xdsconfig.Listener{l}}}
	return cfg
}

func randomHeader(rng *rand.Rand, i int) xdsconfig.HeaderMatch {
	h := xdsconfig.HeaderMatch{Name: []string{"x-h", "x-api-version", "user-agent"}[i%3], Invert: rng.IntN(4) == 0}
	yes, no := true, false
	switch rng.IntN(6) {
	case 0:
		h.Exact = []string{"v", "2", "curl/8"}[rng.IntN(3)]
		h.IgnoreCase = rng.IntN(2) == 0
	case 1:
		h.Prefix, h.IgnoreCase = "x", rng.IntN(2) == 0
	case 2:
		h.Suffix, h.IgnoreCase = "v", rng.IntN(2) == 0
	case 3:
		h.Contains, h.IgnoreCase = "bot", rng.IntN(2) == 0
	case 4:
		h.Regex = []string{"v|xv", "[0-9]+", ".*[Bb]ot"}[rng.IntN(3)]
	case 5:
		h.Present = []*bool{&yes, &no}[rng.IntN(2)]
	}
	return h
}
