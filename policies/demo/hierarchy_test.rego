package demo.hierarchy_test

import data.scopegate.scopes

# The demo's scope model, policies/scopegate/scope_hierarchy/data.json, is
# loaded at data.scopegate.scope_hierarchy (its directory relative to the
# policy root). The built-in policy ships without it: it implies nothing.
test_demo_hierarchy_is_loaded if {
	scopes.hierarchy["orders:write"] == ["orders:read"]
	scopes.expand(["orders:write"]) == {"orders:write", "orders:read"}
}
