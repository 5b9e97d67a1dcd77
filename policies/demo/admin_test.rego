package demo.admin_test

import data.scopegate.authz
import data.scopegate.rules.demo

admin_input := {
	"request": {
		"method": "GET",
		"path": "/admin/users",
		"path_segments": ["admin", "users"],
		"query": {},
		"host": "api.example.test",
		"scheme": "https",
		"headers": {},
		"source_address": "10.0.0.7:51234",
		"protocol": "HTTP/1.1",
	},
	"route": {"name": "admin", "scopes": ["admin"], "mode": ""},
	"token": {
		"issuer": "demo",
		"iss": "https://idp.example.test",
		"sub": "ops-bot",
		"client_id": "ops-console",
		"aud": ["orders-api"],
		"scopes": ["admin"],
		"exp": 4102444800,
		"iat": 1700000000,
		"jti": "jti-2",
		"claims": {},
	},
}

# A request: route name, path, decoded segments, token client and scopes.
req(route, path, segments, client, scopes) := object.union(admin_input, {
	"request": {"path": path, "path_segments": segments},
	"route": {"name": route, "scopes": route_scopes[route]},
	"token": {"client_id": client, "scopes": scopes},
})

route_scopes := {
	"admin": ["admin"],
	"orders-read": ["orders:read"],
	"orders-write": ["orders:write"],
	"catch-all": [],
	"": [],
}

allow := {"allow": true}

deny(reason) := {"allow": false, "status": 403, "reason": reason, "reasons": [reason]}

# The full decision for the demo's routes with the shipped data
# (allowed_clients: ["ops-console"]).
test_admin_decision[note] if {
	some note, tc in {
		"allowed client with admin scope": {
			"in": req("admin", "/admin/users", ["admin", "users"], "ops-console", ["admin"]),
			"want": allow,
		},
		"other client with admin scope": {
			"in": req("admin", "/admin/users", ["admin", "users"], "orders-web", ["admin"]),
			"want": deny("client_not_allowed"),
		},
		"client id differs in case": {
			"in": req("admin", "/admin/users", ["admin", "users"], "OPS-CONSOLE", ["admin"]),
			"want": deny("client_not_allowed"),
		},
		"empty client id": {
			"in": req("admin", "/admin", ["admin"], "", ["admin"]),
			"want": deny("client_not_allowed"),
		},
		"allowed client without admin scope: missing scope first": {
			"in": req("admin", "/admin/users", ["admin", "users"], "ops-console", ["orders:write"]),
			"want": {
				"allow": false, "status": 403, "reason": "insufficient_scope",
				"missing_scopes": ["admin"], "reasons": ["insufficient_scope"],
			},
		},
		"other client without admin scope: both reasons": {
			"in": req("admin", "/admin/users", ["admin", "users"], "orders-web", []),
			"want": {
				"allow": false, "status": 403, "reason": "insufficient_scope",
				"missing_scopes": ["admin"], "reasons": ["client_not_allowed", "insufficient_scope"],
			},
		},
		# A plain `prefix: /admin` route also matches /administrators (unlike
		# path_separated_prefix): the route name alone brings the client check.
		"admin route, path not /admin": {
			"in": req("admin", "/administrators", ["administrators"], "orders-web", ["admin"]),
			"want": deny("client_not_allowed"),
		},
		"orders route unaffected by the admin client list": {
			"in": req("orders-read", "/orders/1", ["orders", "1"], "orders-web", ["orders:read"]),
			"want": allow,
		},
		"orders path segment named admin is not /admin": {
			"in": req("orders-read", "/orders/admin", ["orders", "admin"], "orders-web", ["orders:read"]),
			"want": allow,
		},
	}
	got := authz.decision with input as tc.in
	got == tc.want
}

# Paths that reach /admin through another route (or none) are denied even for
# the allowed client with the admin scope: the route Envoy matched decides
# which scopes were checked, so it must be the admin route.
test_admin_path_tricks[note] if {
	some note, tc in {
		"double slash": {"path": "//admin/users", "segments": ["", "admin", "users"]},
		"upper case": {"path": "/ADMIN/users", "segments": ["ADMIN", "users"]},
		"mixed case": {"path": "/aDmIn", "segments": ["aDmIn"]},
		"percent-encoded letter": {"path": "/%61dmin/users", "segments": ["admin", "users"]},
		"matrix parameter": {"path": "/admin;x=1/users", "segments": ["admin;x=1", "users"]},
		"trailing slash only": {"path": "/admin/", "segments": ["admin", ""]},
		"many leading slashes": {"path": "///admin", "segments": ["", "", "admin"]},
	}
	some route in ["orders-read", "catch-all", ""]
	got := authz.decision with input as req(route, tc.path, tc.segments, "ops-console", ["admin", "orders:read"])
	got == deny("route_mismatch")
}

# The same tricks on the admin route itself still get the client check.
test_admin_path_tricks_on_admin_route[note] if {
	some note, tc in {
		"double slash": {"path": "//admin/users", "segments": ["", "admin", "users"]},
		"percent-encoded letter": {"path": "/%61dmin/users", "segments": ["admin", "users"]},
	}
	ok := authz.decision with input as req("admin", tc.path, tc.segments, "ops-console", ["admin"])
	ok == allow
	bad := authz.decision with input as req("admin", tc.path, tc.segments, "orders-web", ["admin"])
	bad == deny("client_not_allowed")
}

# The package's own deny set, for the same situations.
test_deny_set[note] if {
	some note, tc in {
		"allowed": {"in": req("admin", "/admin", ["admin"], "ops-console", ["admin"]), "want": set()},
		"client": {
			"in": req("admin", "/admin", ["admin"], "web", ["admin"]),
			"want": {{"reason": "client_not_allowed", "status": 403}},
		},
		"mismatch and client": {
			"in": req("orders-read", "//admin", ["", "admin"], "web", ["admin"]),
			"want": {{"reason": "client_not_allowed", "status": 403}, {"reason": "route_mismatch", "status": 403}},
		},
		"root path": {"in": req("catch-all", "/", [""], "web", []), "want": set()},
		"no segments": {"in": req("catch-all", "", [], "web", []), "want": set()},
	}
	got := demo.deny with input as tc.in
	got == tc.want
}

# A route without a name (e.g. `scopegate check` without --route) is not
# the admin route.
test_admin_path_on_unnamed_route if {
	inp := json.remove(req("admin", "/admin", ["admin"], "ops-console", ["admin"]), ["route/name"])
	got := authz.decision with input as inp
	got == deny("route_mismatch")
}

# The client list is data: replace it without touching the rule.
test_allowed_clients_from_data[note] if {
	some note, tc in {
		"other list admits the other client": {"clients": ["orders-web"], "client": "orders-web", "want": allow},
		"other list rejects ops-console": {"clients": ["orders-web"], "client": "ops-console", "want": deny("client_not_allowed")},
		"empty list rejects everyone": {"clients": [], "client": "ops-console", "want": deny("client_not_allowed")},
		"malformed list rejects everyone": {"clients": "ops-console", "client": "ops-console", "want": deny("client_not_allowed")},
	}
	got := authz.decision with input as req("admin", "/admin", ["admin"], tc.client, ["admin"])
		with data.demo.admin.allowed_clients as tc.clients
	got == tc.want
}

test_missing_client_list_rejects_everyone if {
	got := authz.decision with input as req("admin", "/admin", ["admin"], "ops-console", ["admin"])
		with data.demo.admin as {}
	got == deny("client_not_allowed")
}

# A token without a client_id claim never passes the admin check.
test_token_without_client_id if {
	inp := json.remove(admin_input, ["token/client_id"])
	got := authz.decision with input as inp
	got == deny("client_not_allowed")
}

# The shipped policies/demo/data.json is loaded at data.demo.
test_shipped_client_list if {
	demo.admin_clients == ["ops-console"]
}
