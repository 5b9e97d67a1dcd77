# METADATA
# title: Demo API rules
# description: |
#   Rules for the compose demo's routes, collected by the default policy
#   (data.scopegate.authz) through this package's `deny` set. Routes:
#   orders-read (GET /orders, orders:read), orders-write (POST/PUT/PATCH/DELETE
#   /orders, orders:write), admin (prefix /admin, admin); /healthz is public
#   and never reaches the policy. The route scopes are enforced by the default
#   policy; this package adds the admin client check (this file) and the
#   ambiguous-path check (paths.rego). Data: policies/demo/data.json, loaded
#   at data.demo.

# /admin: only the clients listed in data.demo.admin.allowed_clients may call
# it, on top of the `admin` scope the route declares.
#
# The rule applies when Envoy matched the `admin` route (input.route.name is
# the route Envoy actually selected, whatever the path looks like) or when the
# path's first non-empty segment, percent-decoded, is "admin" in any case:
# "//admin", "/%61dmin", "/ADMIN", "/admin;x=y" all count. A request that
# targets /admin through any other route is denied outright (route_mismatch):
# that route's scopes were never meant to protect the admin API.
package scopegate.rules.demo

default admin_clients := []

admin_clients := data.demo.admin.allowed_clients if is_array(data.demo.admin.allowed_clients)

# The first non-empty path segment, lower-cased, with any ";params" cut off
# (some servers ignore matrix parameters when routing). "" when there is none.
default first_segment := ""

first_segment := lower(split(segment, ";")[0]) if {
	segments := [s | some s in input.request.path_segments; s != ""]
	segment := segments[0]
}

# The route Envoy matched is the admin route.
admin_route if input.route.name == "admin"

# The path targets /admin, whatever Envoy matched. The raw path is looked at
# first, so that ordinary requests skip the segment scan: a first segment
# that decodes to "admin" in any case has "ADMIN" in the upper-cased raw path,
# or a percent escape ("/%61dmin").
admin_path if {
	path := upper(input.request.path)
	some hint in ["ADMIN", "%"]
	contains(path, hint)
	first_segment == "admin"
}

# A helper rule, not `not input.token.client_id in admin_clients` inline: OPA
# evaluates a call's arguments (`in` is a call) before the negation, so with
# no client_id claim the inline form is undefined and would never deny.
client_allowed if input.token.client_id in admin_clients

deny contains {"reason": "client_not_allowed", "status": 403} if {
	input.route.name == "admin" # admin_route, inlined: this runs on every request
	not client_allowed
}

deny contains {"reason": "client_not_allowed", "status": 403} if {
	admin_path
	not client_allowed
}

# `not admin_route` rather than `input.route.name != "admin"`, which would be
# undefined (and never deny) when the route has no name.
deny contains {"reason": "route_mismatch", "status": 403} if {
	admin_path
	not admin_route
}
