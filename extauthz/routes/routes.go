// Package routes is authz's own route table, for mesh mode: when someone else's control plane
// (Istio, Envoy Gateway, Contour) configures Envoy and a CheckRequest carries no route
// context extensions, authz finds the route the request took the way Envoy would (virtual
// host by :authority, then the first route in order whose path, method and header matchers
// hold) and yields that route's context extensions, computed once when the table is built.
//
// The table is built from its own inputs (VirtualHost, Route), never from a config package;
// a Match allocates nothing.
package routes

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
)

// PathKind is how a route's path is matched (Envoy's RouteMatch path specifiers).
type PathKind uint8

const (
	// PathExact: the path (query and fragment excluded) equals Value.
	PathExact PathKind = iota + 1
	// PathPrefix: the path starts with Value.
	PathPrefix
	// PathSeparatedPrefix: the path is Value, or starts with Value followed by "/".
	PathSeparatedPrefix
	// PathRegex: the whole path matches the RE2 expression Value.
	PathRegex
)

// StringKind is how a header matcher compares a header's value (Envoy's StringMatcher, and
// present_match).
type StringKind uint8

const (
	StringExact StringKind = iota + 1
	StringPrefix
	StringSuffix
	StringContains
	StringRegex
	// StringPresent matches on the header being sent (Present true) or not (false).
	StringPresent
)

// VirtualHost is one virtual host: the domains it serves and its routes, in order.
type VirtualHost struct {
	Name string
	// Domains are host names ("api.example.com"), host:port, "*.suffix" and "prefix.*"
	// wildcards, or "*" (any host).
	Domains []string
	Routes  []Route
}

// Route is one route of a virtual host.
type Route struct {
	Name string
	Path PathMatch
	// Methods, when set, restrict the route to these methods (exact, case-sensitive).
	Methods []string
	// Headers must all match.
	Headers []HeaderMatch
	// Extensions are the context extensions Envoy would send authz for the route; nil for a
	// public route (ext_authz disabled on it).
	Extensions map[string]string
	// Document, when set, is a response authz answers itself (a metadata document).
	Document *Document
}

// PathMatch matches a request's path.
type PathMatch struct {
	Kind  PathKind
	Value string
	// IgnoreCase compares Exact, Prefix and SeparatedPrefix without regard to ASCII case
	// (Envoy's case_sensitive: false); a regex says so itself.
	IgnoreCase bool
}

// HeaderMatch matches one request header by its value as Envoy joins repeats (",").
type HeaderMatch struct {
	Name  string // lower case
	Kind  StringKind
	Value string
	// Present is the wanted presence for StringPresent.
	Present    bool
	IgnoreCase bool
	Invert     bool
}

// Document is a response authz gives itself for a route (status 200).
type Document struct {
	Body        []byte
	ContentType string
	// CacheControl is the Cache-Control header's value ("" for none).
	CacheControl string
}

// Matched is the route a request matched.
type Matched struct {
	VirtualHost string
	Name        string
	// Extensions: see Route.Extensions (nil on a public route).
	Extensions map[string]string
	Document   *Document
}

// Public reports whether the route has ext_authz disabled.
func (m *Matched) Public() bool { return m.Extensions == nil && m.Document == nil }

// Table is a compiled route table; it is immutable and safe for concurrent use.
type Table struct {
	exact    map[string]*vhost
	suffixes []wildcard // longest first
	prefixes []wildcard // longest first
	any      *vhost
	vhosts   int
	routes   int
}

type wildcard struct {
	part string
	vh   *vhost
}

type vhost struct {
	name   string
	routes []route
	// bySegment lists, per lower-cased first path segment, the routes that can only match a
	// path with that first segment; anywhere lists the rest (regexes, the "/" prefix). Both
	// are in route order, and a match walks the two merged, so the first match in file order
	// wins as in Envoy, without trying every route.
	bySegment map[string][]int32
	anywhere  []int32
}

type route struct {
	Matched
	path       PathMatch
	re         *regexp.Regexp
	methods    []string
	headers    []header
	anySegment bool
	segment    string
}

type header struct {
	HeaderMatch
	re *regexp.Regexp
}

// New compiles vhosts. Domains are matched without regard to case; a domain served by two
// virtual hosts, a bad regex or an incomplete matcher is an error naming the virtual host and
// route.
func New(vhosts []VirtualHost) (*Table, error) {
	t := &Table{exact: map[string]*vhost{}}
	seen := map[string]string{}
	var errs []error
	for i := range vhosts {
		in := &vhosts[i]
		vh := &vhost{name: in.Name, bySegment: map[string][]int32{}}
		for j := range in.Routes {
			r, err := compile(&in.Routes[j])
			if err != nil {
				errs = append(errs, fmt.Errorf("virtual host %q: route %q: %w", in.Name, in.Routes[j].Name, err))
				continue
			}
			r.VirtualHost = in.Name
			idx := int32(len(vh.routes))
			vh.routes = append(vh.routes, r)
			if r.anySegment {
				vh.anywhere = append(vh.anywhere, idx)
			} else {
				vh.bySegment[r.segment] = append(vh.bySegment[r.segment], idx)
			}
		}
		t.routes += len(vh.routes)
		t.vhosts++
		for _, d := range in.Domains {
			d = strings.ToLower(d)
			if prev, ok := seen[d]; ok {
				errs = append(errs, fmt.Errorf("virtual host %q: domain %q is already served by virtual host %q", in.Name, d, prev))
				continue
			}
			seen[d] = in.Name
			switch {
			case d == "*":
				t.any = vh
			case strings.HasPrefix(d, "*"):
				t.suffixes = append(t.suffixes, wildcard{d[1:], vh})
			case strings.HasSuffix(d, "*"):
				t.prefixes = append(t.prefixes, wildcard{d[:len(d)-1], vh})
			default:
				t.exact[d] = vh
			}
		}
	}
	longestFirst := func(w []wildcard) {
		sort.SliceStable(w, func(i, j int) bool { return len(w[i].part) > len(w[j].part) })
	}
	longestFirst(t.suffixes)
	longestFirst(t.prefixes)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// maxRegexLen bounds a regular expression (as the control plane's validation does).
const maxRegexLen = 1024

func compileRegex(expr string) (*regexp.Regexp, error) {
	if len(expr) > maxRegexLen {
		return nil, fmt.Errorf("regex longer than %d characters", maxRegexLen)
	}
	// Envoy's safe_regex matches the whole value (RE2 FullMatch).
	re, err := regexp.Compile(`^(?:` + expr + `)$`)
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w", expr, err)
	}
	return re, nil
}

func compile(in *Route) (route, error) {
	r := route{Matched: Matched{Name: in.Name, Extensions: in.Extensions, Document: in.Document},
		path: in.Path, methods: in.Methods}
	switch in.Path.Kind {
	case PathRegex:
		re, err := compileRegex(in.Path.Value)
		if err != nil {
			return r, err
		}
		r.re, r.anySegment = re, true
	case PathExact, PathPrefix, PathSeparatedPrefix:
		if !strings.HasPrefix(in.Path.Value, "/") {
			return r, fmt.Errorf("path %q must start with /", in.Path.Value)
		}
		seg, whole := firstSegment(in.Path.Value)
		// A plain prefix that ends inside its first segment ("/" itself) can match any.
		r.anySegment = in.Path.Kind == PathPrefix && !whole
		r.segment = lowerASCII(seg)
	default:
		return r, errors.New("no path matcher")
	}
	for _, h := range in.Headers {
		hc := header{HeaderMatch: h}
		if h.Name == "" {
			return r, errors.New("header matcher without a name")
		}
		switch h.Kind {
		case StringRegex:
			re, err := compileRegex(h.Value)
			if err != nil {
				return r, fmt.Errorf("header %q: %w", h.Name, err)
			}
			hc.re = re
		case StringExact, StringPrefix, StringSuffix, StringContains, StringPresent:
		default:
			return r, fmt.Errorf("header %q: no matcher", h.Name)
		}
		if h.IgnoreCase && h.Kind == StringContains {
			hc.Value = lowerASCII(h.Value)
		}
		r.headers = append(r.headers, hc)
	}
	return r, nil
}

// firstSegment is p's first path segment ("/a/b" → "a"), and whether the segment is whole
// (followed by "/" or the end) in p.
func firstSegment(p string) (seg string, whole bool) {
	rest := strings.TrimPrefix(p, "/")
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[:i], true
	}
	return rest, false
}

// Len reports the number of virtual hosts and routes.
func (t *Table) Len() (vhosts, routes int) { return t.vhosts, t.routes }

// Match returns the route Envoy would take for a request to authority (the :authority
// header), path (:path, query included) with method and headers (lower-case names, repeats
// joined with ","), or nil when no virtual host serves the authority or none of its routes
// matches.
func (t *Table) Match(authority, path, method string, headers map[string]string) *Matched {
	vh := t.virtualHost(authority)
	if vh == nil {
		return nil
	}
	return vh.match(stripQuery(path), method, headers)
}

// virtualHost picks the virtual host as Envoy does: the exact domain (host names compare
// without case; a port is part of the authority and is matched as given), then the longest
// "*" suffix, then the longest "*" prefix (each wildcard standing for at least one
// character), then "*".
func (t *Table) virtualHost(authority string) *vhost {
	if len(t.exact) == 0 && len(t.suffixes) == 0 && len(t.prefixes) == 0 {
		return t.any
	}
	if authority == "" {
		return nil
	}
	var buf [256]byte
	host := lowerInto(buf[:0], authority)
	// string(host) in a map index or a comparison does not allocate.
	if vh, ok := t.exact[string(host)]; ok {
		return vh
	}
	for _, w := range t.suffixes {
		if len(w.part) < len(host) && string(host[len(host)-len(w.part):]) == w.part {
			return w.vh
		}
	}
	for _, w := range t.prefixes {
		if len(w.part) < len(host) && string(host[:len(w.part)]) == w.part {
			return w.vh
		}
	}
	return t.any
}

func (vh *vhost) match(path, method string, headers map[string]string) *Matched {
	var bucket []int32
	if strings.HasPrefix(path, "/") {
		seg, _ := firstSegment(path)
		var buf [128]byte
		bucket = vh.bySegment[string(lowerInto(buf[:0], seg))]
	}
	a, b := bucket, vh.anywhere
	for len(a) > 0 || len(b) > 0 {
		var i int32
		if len(b) == 0 || (len(a) > 0 && a[0] < b[0]) {
			i, a = a[0], a[1:]
		} else {
			i, b = b[0], b[1:]
		}
		if r := &vh.routes[i]; r.matches(path, method, headers) {
			return &r.Matched
		}
	}
	return nil
}

func (r *route) matches(path, method string, headers map[string]string) bool {
	if !r.pathMatches(path) {
		return false
	}
	if len(r.methods) > 0 {
		ok := false
		for _, m := range r.methods {
			if m == method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for i := range r.headers {
		if !r.headers[i].matches(headers) {
			return false
		}
	}
	return true
}

func (r *route) pathMatches(path string) bool {
	v := r.path.Value
	switch r.path.Kind {
	case PathRegex:
		return r.re.MatchString(path)
	case PathExact:
		return len(path) == len(v) && equalPart(path, v, r.path.IgnoreCase)
	case PathPrefix:
		return len(path) >= len(v) && equalPart(path[:len(v)], v, r.path.IgnoreCase)
	case PathSeparatedPrefix:
		return len(path) >= len(v) && (len(path) == len(v) || path[len(v)] == '/') &&
			equalPart(path[:len(v)], v, r.path.IgnoreCase)
	}
	return false
}

// matches is Envoy's header matching: a missing header matches only a presence matcher
// that wants it absent (or, inverted, present); a sent one is compared, then inverted.
func (h *header) matches(headers map[string]string) bool {
	val, ok := headers[h.Name]
	if !ok {
		return h.Kind == StringPresent && (h.Present == h.Invert)
	}
	var m bool
	switch h.Kind {
	case StringPresent:
		m = h.Present
	case StringExact:
		m = len(val) == len(h.Value) && equalPart(val, h.Value, h.IgnoreCase)
	case StringPrefix:
		m = len(val) >= len(h.Value) && equalPart(val[:len(h.Value)], h.Value, h.IgnoreCase)
	case StringSuffix:
		m = len(val) >= len(h.Value) && equalPart(val[len(val)-len(h.Value):], h.Value, h.IgnoreCase)
	case StringContains:
		if h.IgnoreCase {
			m = containsFold(val, h.Value)
		} else {
			m = strings.Contains(val, h.Value)
		}
	case StringRegex:
		m = h.re.MatchString(val)
	}
	return m != h.Invert
}

// stripQuery cuts the query and fragment off a :path (Envoy matches routes on the rest).
func stripQuery(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		return p[:i]
	}
	return p
}

// Live is the table in force, swapped whole on reload: a Check reads one table from start to
// end, never a half-built one.
type Live struct{ p atomic.Pointer[Table] }

// NewLive starts with t.
func NewLive(t *Table) *Live {
	l := &Live{}
	l.p.Store(t)
	return l
}

// Load returns the table in force (nil for a nil Live).
func (l *Live) Load() *Table {
	if l == nil {
		return nil
	}
	return l.p.Load()
}

// Store puts t in force.
func (l *Live) Store(t *Table) { l.p.Store(t) }
