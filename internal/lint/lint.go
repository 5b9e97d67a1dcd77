// Package lint cross-checks the control plane's routes against the policy (and, when given,
// the demo IdP's grants): routes nothing protects, rules about routes that do not exist,
// public routes that shadow protected ones, and scopes no client can be granted. Each
// finding names a file and line.
package lint

import (
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"go.yaml.in/yaml/v3"

	xdsconfig "github.com/scopegate/scopegate/controlplane/config"
)

// Severity of a finding: errors fail the lint, warnings are listed.
type Severity string

const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Finding is one problem, at file:line.
type Finding struct {
	File     string   `json:"file"`
	Line     int      `json:"line"`
	Severity Severity `json:"severity"`
	Check    string   `json:"check"`
	Message  string   `json:"message"`
}

func (f Finding) String() string {
	return fmt.Sprintf("%s:%d: %s: %s [%s]", f.File, f.Line, f.Severity, f.Message, f.Check)
}

// Check names.
const (
	CheckUnprotected   = "unprotected-route"
	CheckUnknownRoute  = "unknown-route"
	CheckPublicOverlap = "public-overlap"
	CheckUngrantable   = "ungrantable-scopes"
)

// Inputs are what lint reads. XDSFile and the policy are required; IdP is optional.
type Inputs struct {
	XDSFile string
	XDS     *xdsconfig.Config
	Policy  *bundle.Bundle
	// GrantsFile names where Grants come from, in findings.
	GrantsFile string
	// Grants are what the identity provider can put in one token; nil: not checked.
	Grants []Grant
}

// Grant is a set of scopes one token from the identity provider can carry: a
// client-credentials client's scopes, or what an authorization-code client and one of its
// users both hold. Any IdP's grants fit (the demo IdP's config, or a clients file written
// for Keycloak, Okta or Entra ID: LoadClients).
type Grant struct {
	// Who is the client (and user) the grant is for.
	Who    string
	Scopes []string
}

// route is a route of the xds config with where it is written.
type route struct {
	xdsconfig.Route
	fleet, vhost string
	line         int
	index        int // position in its virtual host: Envoy takes the first match
}

// Run returns the findings, errors first, then by file and line.
func Run(in Inputs) ([]Finding, error) {
	routes, err := routesWithLines(in.XDSFile, in.XDS)
	if err != nil {
		return nil, err
	}
	refs := routeRefs(in.Policy)
	var out []Finding
	add := func(file string, line int, sev Severity, check, format string, args ...any) {
		out = append(out, Finding{File: file, Line: line, Severity: sev, Check: check, Message: fmt.Sprintf(format, args...)})
	}
	names := map[string]bool{}
	for _, r := range routes {
		names[r.Name] = true
	}
	for _, r := range routes {
		if !r.Public && len(r.Scopes) == 0 && len(refs[r.Name]) == 0 {
			add(in.XDSFile, r.line, Error, CheckUnprotected,
				"route %s is protected but requires no scopes and no policy rule names it: any valid token passes", r.Name)
		}
	}
	for name, locs := range refs {
		if names[name] {
			continue
		}
		for _, l := range locs {
			add(l.File, l.Row, Error, CheckUnknownRoute, "the policy names route %q, which %s does not define: the rule never applies", name, in.XDSFile)
		}
	}
	for _, pub := range routes {
		if !pub.Public {
			continue
		}
		for _, prot := range routes {
			if prot.Public || prot.fleet != pub.fleet || prot.vhost != pub.vhost || !overlaps(pub.Match, prot.Match) {
				continue
			}
			if pub.index < prot.index {
				add(in.XDSFile, pub.line, Error, CheckPublicOverlap,
					"public route %s comes before protected route %s (line %d) and matches some of its requests: those skip authorization", pub.Name, prot.Name, prot.line)
			} else {
				add(in.XDSFile, pub.line, Warning, CheckPublicOverlap,
					"public route %s overlaps protected route %s (line %d), which comes first: the overlapping requests are protected", pub.Name, prot.Name, prot.line)
			}
		}
	}
	if in.Grants != nil {
		implied := hierarchy(in.Policy)
		for _, r := range routes {
			if r.Public || len(r.Scopes) == 0 || grantable(r.Scopes, in.Grants, implied) {
				continue
			}
			add(in.XDSFile, r.line, Warning, CheckUngrantable,
				"route %s requires [%s], which no client in %s can be granted together: no token can pass", r.Name, strings.Join(r.Scopes, " "), in.GrantsFile)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Severity != b.Severity {
			return a.Severity == Error
		}
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Line < b.Line
	})
	return out, nil
}

// HasErrors reports whether any finding is an error.
func HasErrors(fs []Finding) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return f.Severity == Error })
}

// Write lists the findings and a summary line.
func Write(w io.Writer, fs []Finding) error {
	var b strings.Builder
	errs := 0
	for _, f := range fs {
		b.WriteString(f.String())
		b.WriteByte('\n')
		if f.Severity == Error {
			errs++
		}
	}
	fmt.Fprintf(&b, "%d error(s), %d warning(s)\n", errs, len(fs)-errs)
	_, err := io.WriteString(w, b.String())
	return err
}

// routesWithLines pairs each route of cfg with its line in file, walking the YAML the same
// way the config was decoded.
func routesWithLines(file string, cfg *xdsconfig.Config) ([]route, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	var out []route
	for fi, f := range cfg.Fleets {
		for li, l := range f.Listeners {
			for vi, vh := range l.VirtualHosts {
				for ri, r := range vh.Routes {
					n := at(root, "fleets", fi, "listeners", li, "virtual_hosts", vi, "routes", ri)
					line := 0
					if n != nil {
						line = n.Line
					}
					out = append(out, route{Route: r, fleet: f.Name, vhost: l.Name + "/" + vh.Name, line: line, index: ri})
				}
			}
		}
	}
	return out, nil
}

// at follows a path of mapping keys (string) and sequence indexes (int) from n.
func at(n *yaml.Node, path ...any) *yaml.Node {
	for _, p := range path {
		if n == nil {
			return nil
		}
		switch k := p.(type) {
		case string:
			var next *yaml.Node
			for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					next = n.Content[i+1]
				}
			}
			n = next
		case int:
			if n.Kind != yaml.SequenceNode || k >= len(n.Content) {
				return nil
			}
			n = n.Content[k]
		}
	}
	return n
}

// overlaps reports whether some request matches both a and b: their paths can be equal
// (Envoy's prefix is a plain string prefix) and their methods intersect.
func overlaps(a, b xdsconfig.Match) bool {
	pathsMeet := false
	switch {
	case a.Prefix != "" && b.Prefix != "":
		pathsMeet = strings.HasPrefix(a.Prefix, b.Prefix) || strings.HasPrefix(b.Prefix, a.Prefix)
	case a.Prefix != "":
		pathsMeet = strings.HasPrefix(b.Path, a.Prefix)
	case b.Prefix != "":
		pathsMeet = strings.HasPrefix(a.Path, b.Prefix)
	default:
		pathsMeet = a.Path == b.Path
	}
	if !pathsMeet || len(a.Methods) == 0 || len(b.Methods) == 0 {
		return pathsMeet
	}
	for _, m := range a.Methods {
		if slices.ContainsFunc(b.Methods, func(n string) bool { return strings.EqualFold(m, n) }) {
			return true
		}
	}
	return false
}

// routeRefs finds the route names the policy compares input.route.name with (==, !=, =,
// or membership in a literal set or array), with where.
func routeRefs(b *bundle.Bundle) map[string][]*ast.Location {
	target := ast.MustParseRef("input.route.name")
	refs := map[string][]*ast.Location{}
	addStr := func(t *ast.Term, loc *ast.Location) {
		if s, ok := t.Value.(ast.String); ok {
			refs[string(s)] = append(refs[string(s)], loc)
		}
	}
	isTarget := func(t *ast.Term) bool {
		r, ok := t.Value.(ast.Ref)
		return ok && r.Equal(target)
	}
	for _, m := range b.Modules {
		if m.Parsed == nil {
			continue
		}
		ast.WalkExprs(m.Parsed, func(e *ast.Expr) bool {
			terms, ok := e.Terms.([]*ast.Term)
			if !ok || len(terms) != 3 {
				return false
			}
			op := terms[0].String()
			loc := e.Location
			switch op {
			case "equal", "neq", "eq", "assign":
				if isTarget(terms[1]) {
					addStr(terms[2], loc)
				} else if isTarget(terms[2]) {
					addStr(terms[1], loc)
				}
			case "internal.member_2":
				if isTarget(terms[1]) {
					switch c := terms[2].Value.(type) {
					case ast.Set:
						c.Foreach(func(t *ast.Term) { addStr(t, loc) })
					case *ast.Array:
						c.Foreach(func(t *ast.Term) { addStr(t, loc) })
					}
				}
			}
			return false
		})
	}
	return refs
}

// hierarchy is data.scopegate.scope_hierarchy: scope → the scopes it implies.
func hierarchy(b *bundle.Bundle) map[string][]string {
	out := map[string][]string{}
	sg, _ := b.Data["scopegate"].(map[string]any)
	h, _ := sg["scope_hierarchy"].(map[string]any)
	for k, v := range h {
		list, _ := v.([]any)
		for _, s := range list {
			if str, ok := s.(string); ok {
				out[k] = append(out[k], str)
			}
		}
	}
	return out
}

// grantable reports whether one token can carry every scope (directly or implied through the
// hierarchy): some grant covers them all.
func grantable(scopes []string, grants []Grant, implied map[string][]string) bool {
	for _, g := range grants {
		all := expand(g.Scopes, implied)
		covered := true
		for _, s := range scopes {
			covered = covered && all[s]
		}
		if covered {
			return true
		}
	}
	return false
}

func expand(held []string, implied map[string][]string) map[string]bool {
	all := map[string]bool{}
	queue := append([]string(nil), held...)
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if all[s] {
			continue
		}
		all[s] = true
		queue = append(queue, implied[s]...)
	}
	return all
}
