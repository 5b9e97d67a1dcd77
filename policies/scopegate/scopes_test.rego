package scopegate.scopes_test

import data.scopegate.scopes

# A hierarchy for the table tests, independent of the shipped data.json:
# a chain, a cycle and a leaf implied by two keys.
hierarchy_fixture := {
	"orders:admin": ["orders:write"],
	"orders:write": ["orders:read"],
	"ping": ["pong"],
	"pong": ["ping"],
	"reports:write": ["reports:read", "orders:read"],
}

test_expand[note] if {
	some note, tc in {
		"empty list": {"granted": [], "want": set()},
		"scope without implications": {"granted": ["profile"], "want": {"profile"}},
		"direct implication": {"granted": ["orders:write"], "want": {"orders:write", "orders:read"}},
		"transitive implication": {"granted": ["orders:admin"], "want": {"orders:admin", "orders:write", "orders:read"}},
		"implied leaf is not a key": {"granted": ["reports:write"], "want": {"reports:write", "reports:read", "orders:read"}},
		"leaf implies nothing upwards": {"granted": ["orders:read"], "want": {"orders:read"}},
		"cycle terminates": {"granted": ["ping"], "want": {"ping", "pong"}},
		"set input": {"granted": {"orders:write"}, "want": {"orders:write", "orders:read"}},
		"duplicates collapse": {"granted": ["orders:read", "orders:read"], "want": {"orders:read"}},
		"scopes are case-sensitive": {"granted": ["Orders:Write"], "want": {"Orders:Write"}},
		"null grants nothing": {"granted": null, "want": set()},
		"space-separated string grants nothing": {"granted": "orders:write orders:read", "want": set()},
		"non-string members dropped": {"granted": ["orders:read", 1, null], "want": {"orders:read"}},
	}
	got := scopes.expand(tc.granted) with data.scopegate.scope_hierarchy as hierarchy_fixture
	got == tc.want
}

test_has_all[note] if {
	some note, tc in {
		"exact match": {"granted": ["orders:read"], "required": ["orders:read"], "want": true},
		"superset": {"granted": ["orders:read", "profile"], "required": ["orders:read"], "want": true},
		"nothing required": {"granted": [], "required": [], "want": true},
		"one of two missing": {"granted": ["orders:read"], "required": ["orders:read", "profile"], "want": false},
		"through hierarchy": {"granted": ["orders:admin"], "required": ["orders:read", "orders:write"], "want": true},
		"no upward implication": {"granted": ["orders:read"], "required": ["orders:write"], "want": false},
		"no grants": {"granted": [], "required": ["orders:read"], "want": false},
	}
	got := scopes.has_all(tc.granted, tc.required) with data.scopegate.scope_hierarchy as hierarchy_fixture
	got == tc.want
}

test_has_all_false_works_with_not if {
	not scopes.has_all(["a"], ["b"])
	not scopes.has_any(["a"], ["b"])
}

test_has_any[note] if {
	some note, tc in {
		"one of two": {"granted": ["profile"], "required": ["orders:read", "profile"], "want": true},
		"through hierarchy": {"granted": ["orders:write"], "required": ["orders:read", "x"], "want": true},
		"none": {"granted": ["profile"], "required": ["orders:read"], "want": false},
		"nothing required": {"granted": ["profile"], "required": [], "want": false},
	}
	got := scopes.has_any(tc.granted, tc.required) with data.scopegate.scope_hierarchy as hierarchy_fixture
	got == tc.want
}

test_missing[note] if {
	some note, tc in {
		"none missing": {"granted": ["orders:write"], "required": ["orders:read"], "want": set()},
		"exact missing set": {"granted": ["orders:read"], "required": ["orders:write", "admin", "orders:read"], "want": {"admin", "orders:write"}},
		"nothing required": {"granted": [], "required": [], "want": set()},
	}
	got := scopes.missing(tc.granted, tc.required) with data.scopegate.scope_hierarchy as hierarchy_fixture
	got == tc.want
}

test_granted_reads_the_token if {
	got := scopes.granted with input as {"token": {"scopes": ["orders:write"]}}
		with data.scopegate.scope_hierarchy as hierarchy_fixture
	got == {"orders:write", "orders:read"}
}

test_granted_without_token_is_empty if {
	got := scopes.granted with input as {}
	got == set()
}

# admin is deliberately not a super-scope: it implies nothing.
test_shipped_admin_implies_nothing if {
	scopes.expand(["admin"]) == {"admin"}
}

# Without the data file (or with a malformed one) the hierarchy is empty:
# fewer grants, never more.
test_missing_or_malformed_hierarchy_grants_literal_scopes_only[note] if {
	some note, h in {
		"absent": null,
		"not an object": ["orders:write", "orders:read"],
	}
	got := scopes.expand(["orders:write"]) with data.scopegate.scope_hierarchy as h
	got == {"orders:write"}
}

# granted is written out inline for speed: it must agree with expand.
test_granted_matches_expand[note] if {
	some note, tc in {
		"shipped data, chain": {"scopes": ["orders:write"], "hierarchy": null},
		"fixture, transitive": {"scopes": ["orders:admin", "profile"], "hierarchy": hierarchy_fixture},
		"fixture, cycle": {"scopes": ["ping"], "hierarchy": hierarchy_fixture},
		"fixture, nothing": {"scopes": [], "hierarchy": hierarchy_fixture},
		"hierarchy not an object": {"scopes": ["orders:write"], "hierarchy": ["orders:write"]},
		"non-string members": {"scopes": ["orders:write", 7], "hierarchy": hierarchy_fixture},
		"scopes null": {"scopes": null, "hierarchy": hierarchy_fixture},
	}
	h := tc.hierarchy
	inp := {"token": {"scopes": tc.scopes}}
	got := granted_with(inp, h)
	want := expand_with(tc.scopes, h)
	got == want
}

# A null fixture keeps the shipped data.
granted_with(inp, h) := g if {
	h == null
	g := scopes.granted with input as inp
} else := g if {
	g := scopes.granted with input as inp with data.scopegate.scope_hierarchy as h
}

expand_with(xs, h) := g if {
	h == null
	g := scopes.expand(xs)
} else := g if {
	g := scopes.expand(xs) with data.scopegate.scope_hierarchy as h
}
