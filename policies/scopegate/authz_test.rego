package scopegate.authz_test

import data.scopegate.authz

# A complete input document as the engine builds it: GET /orders/1 on the
# orders-read route, with a token holding orders:read.
base_input := {
	"request": {
		"method": "GET",
		"path": "/orders/1",
		"path_segments": ["orders", "1"],
		"query": {},
		"host": "api.example.test",
		"scheme": "https",
		"headers": {"user-agent": "test"},
		"source_address": "10.0.0.7:51234",
		"protocol": "HTTP/1.1",
	},
	"route": {"name": "orders-read", "scopes": ["orders:read"], "mode": ""},
	"token": {
		"issuer": "demo",
		"iss": "https://idp.example.test",
		"sub": "user-1",
		"client_id": "orders-web",
		"aud": ["orders-api"],
		"scopes": ["orders:read"],
		"exp": 4102444800,
		"iat": 1700000000,
		"jti": "jti-1",
		"claims": {},
	},
}

with_route_and_scopes(route_scopes, token_scopes) := object.union(base_input, {
	"route": {"scopes": route_scopes},
	"token": {"scopes": token_scopes},
})

allow := {"allow": true}

insufficient(missing, reasons) := {
	"allow": false,
	"status": 403,
	"reason": "insufficient_scope",
	"missing_scopes": missing,
	"reasons": reasons,
}

# The scope check, with a hierarchy fixture (orders:write implies
# orders:read; the built-in data implies nothing). Demo rules do not fire: the
# path is /orders/1.
test_scopes[note] if {
	some note, tc in {
		"exact scope": {"route": ["orders:read"], "token": ["orders:read"], "want": allow},
		"extra scopes": {"route": ["orders:read"], "token": ["profile", "orders:read"], "want": allow},
		"route requires nothing": {"route": [], "token": [], "want": allow},
		"route requires nothing, token has scopes": {"route": [], "token": ["orders:read"], "want": allow},
		"hierarchy: write implies read": {"route": ["orders:read"], "token": ["orders:write"], "want": allow},
		"hierarchy: read does not imply write": {
			"route": ["orders:write"], "token": ["orders:read"],
			"want": insufficient(["orders:write"], ["insufficient_scope"]),
		},
		"no scopes at all": {
			"route": ["orders:read"], "token": [],
			"want": insufficient(["orders:read"], ["insufficient_scope"]),
		},
		"exact missing list, sorted": {
			"route": ["orders:write", "admin", "orders:read"], "token": ["orders:read"],
			"want": insufficient(["admin", "orders:write"], ["insufficient_scope"]),
		},
		"case-sensitive": {
			"route": ["orders:read"], "token": ["Orders:Read"],
			"want": insufficient(["orders:read"], ["insufficient_scope"]),
		},
		"admin is not a super-scope": {
			"route": ["orders:read"], "token": ["admin"],
			"want": insufficient(["orders:read"], ["insufficient_scope"]),
		},
		"token scopes null": {
			"route": ["orders:read"], "token": null,
			"want": insufficient(["orders:read"], ["insufficient_scope"]),
		},
		"token scopes as a string": {
			"route": ["orders:read"], "token": "orders:read",
			"want": insufficient(["orders:read"], ["insufficient_scope"]),
		},
	}
	got := authz.decision with input as with_route_and_scopes(tc.route, tc.token)
		with data.scopegate.scope_hierarchy as {"orders:write": ["orders:read"]}
	got == tc.want
}

# No scopes claim at all: the fast path must not read an undefined list as
# "nothing missing".
test_token_without_scopes_claim[note] if {
	some note, tc in {
		"route requires a scope": {"route": ["orders:read"], "want": insufficient(["orders:read"], ["insufficient_scope"])},
		"route requires nothing": {"route": [], "want": allow},
	}
	inp := json.remove(with_route_and_scopes(tc.route, []), ["token/scopes"])
	got := authz.decision with input as inp
	got == tc.want
}

# The hierarchy is data: a test (or a deployment) can change it without code.
test_hierarchy_from_data if {
	inp := with_route_and_scopes(["orders:read"], ["orders:admin"])
	got := authz.decision with input as inp
		with data.scopegate.scope_hierarchy as {"orders:admin": ["orders:write"], "orders:write": ["orders:read"]}
	got == allow

	# The shipped data knows nothing about orders:admin.
	shipped := authz.decision with input as inp
	shipped == insufficient(["orders:read"], ["insufficient_scope"])
}

invalid := {"allow": false, "status": 500, "reason": "invalid_input", "reasons": ["invalid_input"]}

# Input the engine should never send fails closed with 500.
test_invalid_input[note] if {
	some note, inp in {
		"empty input": {},
		"no token": object.remove(base_input, ["token"]),
		"token not an object": object.union(base_input, {"token": "eyJ..."}),
		"no route": object.remove(base_input, ["route"]),
		"route scopes missing": object.union(object.remove(base_input, ["route"]), {"route": {"name": "orders-read"}}),
		"route scopes as a string": object.union(base_input, {"route": {"scopes": "orders:read"}}),
	}
	got := authz.decision with input as inp
	got == invalid
}

# Denials from rule packages under data.scopegate.rules, mocked here as
# data.scopegate.rules.t.deny, in every shape an author may write.
test_rule_denials[note] if {
	some note, tc in {
		"no denial": {"deny": set(), "want": allow},
		"one denial": {
			"deny": {{"reason": "client_not_allowed", "status": 403}},
			"want": {"allow": false, "status": 403, "reason": "client_not_allowed", "reasons": ["client_not_allowed"]},
		},
		"status defaults to 403": {
			"deny": {{"reason": "blocked"}},
			"want": {"allow": false, "status": 403, "reason": "blocked", "reasons": ["blocked"]},
		},
		"custom status kept": {
			"deny": {{"reason": "rate_limited", "status": 429}},
			"want": {"allow": false, "status": 429, "reason": "rate_limited", "reasons": ["rate_limited"]},
		},
		"highest status wins": {
			"deny": {{"reason": "a_forbidden", "status": 403}, {"reason": "z_rate_limited", "status": 429}},
			"want": {"allow": false, "status": 429, "reason": "z_rate_limited", "reasons": ["a_forbidden", "z_rate_limited"]},
		},
		"same status: first reason in sort order": {
			"deny": {{"reason": "zeta", "status": 403}, {"reason": "alpha", "status": 403}},
			"want": {"allow": false, "status": 403, "reason": "alpha", "reasons": ["alpha", "zeta"]},
		},
		"status 200 cannot allow": {
			"deny": {{"reason": "oops", "status": 200}},
			"want": {"allow": false, "status": 403, "reason": "oops", "reasons": ["oops"]},
		},
		"status 302 becomes 403": {
			"deny": {{"reason": "oops", "status": 302}},
			"want": {"allow": false, "status": 403, "reason": "oops", "reasons": ["oops"]},
		},
		"status as a string becomes 403": {
			"deny": {{"reason": "oops", "status": "429"}},
			"want": {"allow": false, "status": 403, "reason": "oops", "reasons": ["oops"]},
		},
		"fractional status becomes 403": {
			"deny": {{"reason": "oops", "status": 429.5}},
			"want": {"allow": false, "status": 403, "reason": "oops", "reasons": ["oops"]},
		},
		"status 600 becomes 403": {
			"deny": {{"reason": "oops", "status": 600}},
			"want": {"allow": false, "status": 403, "reason": "oops", "reasons": ["oops"]},
		},
		"bare string reason": {
			"deny": {"ip_blocked"},
			"want": {"allow": false, "status": 403, "reason": "ip_blocked", "reasons": ["ip_blocked"]},
		},
		"object without reason": {
			"deny": {{"status": 401}},
			"want": {"allow": false, "status": 401, "reason": "denied", "reasons": ["denied"]},
		},
		"empty reason": {
			"deny": {{"reason": ""}},
			"want": {"allow": false, "status": 403, "reason": "denied", "reasons": ["denied"]},
		},
		# Shapes an author may write by mistake: never fail open.
		"boolean deny true": {
			"deny": true,
			"want": {"allow": false, "status": 403, "reason": "denied", "reasons": ["denied"]},
		},
		"boolean deny false": {"deny": false, "want": allow},
		"single object": {
			"deny": {"reason": "single", "status": 451},
			"want": {"allow": false, "status": 451, "reason": "single", "reasons": ["single"]},
		},
		"empty object (partial object, no match)": {"deny": {}, "want": allow},
		"array": {
			"deny": [{"reason": "from_array", "status": 403}],
			"want": {"allow": false, "status": 403, "reason": "from_array", "reasons": ["from_array"]},
		},
		"empty array": {"deny": [], "want": allow},
	}
	got := authz.decision with input as base_input with data.scopegate.rules.t.deny as tc.deny
	got == tc.want
}

# Missing scopes take precedence over any other denial (status, reason and
# missing_scopes), and the other reasons are still reported.
test_missing_scopes_take_precedence if {
	inp := with_route_and_scopes(["orders:write"], ["orders:read"])
	got := authz.decision with input as inp
		with data.scopegate.rules.t.deny as {{"reason": "rate_limited", "status": 429}}
	got == insufficient(["orders:write"], ["insufficient_scope", "rate_limited"])
}

# Several rule packages contribute.
test_denials_from_several_packages if {
	got := authz.decision with input as base_input
		with data.scopegate.rules.t1.deny as {{"reason": "one", "status": 403}}
		with data.scopegate.rules.t2.deny as {{"reason": "two", "status": 403}}
	got.reasons == ["one", "two"]
}

# The fast allow path and the denial list agree on what "no denial" is, for
# every shape a package's deny can take.
test_fast_path_agrees_with_denials[note] if {
	some note, v in {
		"empty set": set(),
		"empty array": [],
		"empty object": {},
		"false": false,
		"set": {{"reason": "r"}},
		"array": [{"reason": "r"}],
		"object": {"reason": "r"},
		"true": true,
		"string": "r",
		"number": 1,
	}
	got := authz.decision with input as base_input with data.scopegate.rules.t.deny as v
	denials := authz.denials with input as base_input with data.scopegate.rules.t.deny as v
	agree(got, denials)
}

agree(decision, denials) if {
	count(denials) == 0
	decision == {"allow": true}
}

agree(decision, denials) if {
	count(denials) > 0
	decision.allow == false
}

# Rule packages nested deeper than data.scopegate.rules.<name> are not
# collected (documented in README.md).
test_nested_rule_package_not_collected if {
	got := authz.decision with input as base_input
		with data.scopegate.rules.team.sub.deny as {{"reason": "nested"}}
	got == allow
}

# The decision is defined, a single object with a boolean allow, for every
# input: normal, malformed, or with broken data and rules.
test_decision_always_defined[note] if {
	some note, tc in {
		"allow": {"input": base_input, "hierarchy": {}, "deny": set()},
		"deny": {"input": with_route_and_scopes(["x"], []), "hierarchy": {}, "deny": set()},
		"empty input": {"input": {}, "hierarchy": {}, "deny": set()},
		"input is a string": {"input": "nope", "hierarchy": {}, "deny": set()},
		"input is null": {"input": null, "hierarchy": {}, "deny": set()},
		"broken hierarchy": {"input": base_input, "hierarchy": {"orders:write": "orders:read"}, "deny": set()},
		"hierarchy not an object": {"input": base_input, "hierarchy": 42, "deny": set()},
		"deny is a number": {"input": base_input, "hierarchy": {}, "deny": 7},
		"deny holds nulls": {"input": base_input, "hierarchy": {}, "deny": {null}},
	}
	got := authz.decision with input as tc.input
		with data.scopegate.scope_hierarchy as tc.hierarchy
		with data.scopegate.rules.t.deny as tc.deny
	is_object(got)
	is_boolean(got.allow)
	count([d | d := authz.decision]) == 1 with input as tc.input
		with data.scopegate.scope_hierarchy as tc.hierarchy
		with data.scopegate.rules.t.deny as tc.deny
}

# When the computation comes out undefined (here: a broken library mocked in),
# the default answers, and it denies.
test_default_denies if {
	inp := with_route_and_scopes(["orders:read"], ["orders:write"])
	got := authz.decision with input as inp with data.scopegate.scopes.granted as 42
	got == {"allow": false, "status": 403, "reason": "default_deny"}
}

# Shadow mode is the engine's job: the policy decides the same way.
test_shadow_mode_does_not_change_the_decision if {
	inp := object.union(with_route_and_scopes(["orders:write"], []), {"route": {"mode": "shadow"}})
	got := authz.decision with input as inp
	got.allow == false
	got.missing_scopes == ["orders:write"]
}

# Step-up asks (RFC 9470) from rule packages: 401 insufficient_user_authentication
# with what to ask for, only when nothing else denies.
step_up := "insufficient_user_authentication"

step_up_decision(fields) := object.union({"allow": false, "status": 401, "reason": step_up, "reasons": [step_up]}, fields)

test_step_up[note] if {
	some note, tc in {
		"acr values and max_age": {
			"deny": {{"reason": step_up, "acr_values": ["urn:mfa", "urn:hwk"], "max_age": 300}},
			"want": step_up_decision({"acr_values": ["urn:mfa", "urn:hwk"], "max_age": 300}),
		},
		"acr values only, status given": {
			"deny": {{"reason": step_up, "status": 401, "acr_values": ["urn:mfa"]}},
			"want": step_up_decision({"acr_values": ["urn:mfa"]}),
		},
		"max_age only, zero": {
			"deny": {{"reason": step_up, "max_age": 0}},
			"want": step_up_decision({"max_age": 0}),
		},
		"another status is still 401": {
			"deny": {{"reason": step_up, "status": 403, "max_age": 60}},
			"want": step_up_decision({"max_age": 60}),
		},
		"two rules: the smallest max_age, the shared acr values": {
			"deny": {
				{"reason": step_up, "acr_values": ["urn:hwk", "urn:mfa"], "max_age": 600},
				{"reason": step_up, "acr_values": ["urn:mfa"], "max_age": 60},
			},
			"want": step_up_decision({"acr_values": ["urn:mfa"], "max_age": 60}),
		},
		"two rules sharing no acr value: the first list in sort order": {
			"deny": {{"reason": step_up, "acr_values": ["urn:b"]}, {"reason": step_up, "acr_values": ["urn:a"]}},
			"want": step_up_decision({"acr_values": ["urn:a"]}),
		},
		"another denial wins over step-up": {
			"deny": {{"reason": step_up, "acr_values": ["urn:mfa"]}, {"reason": "client_not_allowed", "status": 403}},
			"want": {"allow": false, "status": 403, "reason": "client_not_allowed", "reasons": ["client_not_allowed", step_up]},
		},
		"a 400 wins over step-up too": {
			"deny": {{"reason": step_up, "acr_values": ["urn:mfa"]}, {"reason": "suspicious_path", "status": 400}},
			"want": {"allow": false, "status": 400, "reason": "suspicious_path", "reasons": [step_up, "suspicious_path"]},
		},
		# Asks the engine could not turn into a challenge: 500, never an allow.
		"nothing to ask for": {
			"deny": {{"reason": step_up}},
			"want": {"allow": false, "status": 500, "reason": "invalid_step_up", "reasons": ["invalid_step_up"]},
		},
		"acr_values not a list": {
			"deny": {{"reason": step_up, "acr_values": "urn:mfa"}},
			"want": {"allow": false, "status": 500, "reason": "invalid_step_up", "reasons": ["invalid_step_up"]},
		},
		"acr_values empty": {
			"deny": {{"reason": step_up, "acr_values": [], "max_age": 60}},
			"want": {"allow": false, "status": 500, "reason": "invalid_step_up", "reasons": ["invalid_step_up"]},
		},
		"acr value not a string": {
			"deny": {{"reason": step_up, "acr_values": [2]}},
			"want": {"allow": false, "status": 500, "reason": "invalid_step_up", "reasons": ["invalid_step_up"]},
		},
		"max_age negative": {
			"deny": {{"reason": step_up, "max_age": -1}},
			"want": {"allow": false, "status": 500, "reason": "invalid_step_up", "reasons": ["invalid_step_up"]},
		},
		"max_age fractional": {
			"deny": {{"reason": step_up, "acr_values": ["urn:mfa"], "max_age": 1.5}},
			"want": {"allow": false, "status": 500, "reason": "invalid_step_up", "reasons": ["invalid_step_up"]},
		},
	}
	got := authz.decision with input as base_input with data.scopegate.rules.t.deny as tc.deny
	got == tc.want
}

# Missing scopes win over a step-up ask: a client is never sent to step up for
# a request its scopes would refuse anyway.
test_missing_scopes_win_over_step_up if {
	inp := with_route_and_scopes(["orders:write"], ["orders:read"])
	got := authz.decision with input as inp
		with data.scopegate.rules.t.deny as {{"reason": step_up, "acr_values": ["urn:mfa"]}}
	got == insufficient(["orders:write"], ["insufficient_scope", step_up])
}
