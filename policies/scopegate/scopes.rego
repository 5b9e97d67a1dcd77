# METADATA
# title: Scope helpers
# description: |
#   Set operations on OAuth scopes for policy authors. Scopes are
#   case-sensitive strings (RFC 6749 section 3.3). Hierarchical scopes are
#   declared as data in policies/scopegate/data.json under "scope_hierarchy",
#   which OPA exposes as data.scopegate.scope_hierarchy when the policies
#   directory is loaded as the root. Each key lists the scopes it implies
#   directly; implication is transitive and cycles are harmless.
package scopegate.scopes

# The hierarchy in force: {} when the data is absent or not an object, so a
# missing data file grants less, never more.
default hierarchy := {}

hierarchy := data.scopegate.scope_hierarchy if is_object(data.scopegate.scope_hierarchy)

# to_set turns a list or set of scopes into a set of strings; anything else
# (null, a space-separated string) becomes the empty set.
to_set(xs) := {x | some x in xs; is_string(x)}

# expand returns the set of granted scopes plus every scope they imply,
# directly or transitively, through the hierarchy.
#
# graph.reachable only returns nodes that are keys of the graph: a granted
# scope with no implications, or an implied leaf such as "orders:read", is
# not in its result. So the expansion is the granted scopes, plus the direct
# implications of every key reached (which covers the leaves).
expand(granted) := s | {implied |
	some key in graph.reachable(hierarchy, s)
	some implied in hierarchy[key]
	is_string(implied)
} if {
	s := to_set(granted)
}

# missing returns the required scopes that granted (after expansion) does not
# cover.
missing(granted, required) := to_set(required) - expand(granted)

# has_all is true when granted (after expansion) covers every required scope,
# false otherwise. An empty required list is always covered.
default has_all(_, _) := false

has_all(granted, required) if count(missing(granted, required)) == 0

# has_any is true when granted (after expansion) covers at least one of the
# required scopes, false otherwise. An empty required list is never covered.
default has_any(_, _) := false

has_any(granted, required) if count(to_set(required) & expand(granted)) > 0

# granted is the current token's scopes, expanded: the same result as
# expand(input.token.scopes), computed once per evaluation and written out
# inline because the default policy uses it on the request path (each
# function call costs allocations). Use it instead of calling expand on the
# token's scopes yourself.
granted := s | {implied |
	some key in graph.reachable(data.scopegate.scope_hierarchy, s)
	some implied in data.scopegate.scope_hierarchy[key]
	is_string(implied)
} if {
	is_object(data.scopegate.scope_hierarchy)
	s := {x | some x in input.token.scopes; is_string(x)}
} else := {x | some x in input.token.scopes; is_string(x)}
