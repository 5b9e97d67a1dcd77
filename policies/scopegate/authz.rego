# METADATA
# title: scopegate default authorization policy
# description: |
#   Evaluated by scopegate on every Check after the bearer token is verified.
#   The engine queries data.scopegate.authz.decision. See policies/README.md
#   for the input document and how each decision field maps to Envoy's answer.
#
#   A request is allowed when the token's scopes, expanded through
#   data.scopegate.scope_hierarchy, cover every scope the route requires and
#   no rule package denies it. Rule packages live directly under
#   data.scopegate.rules (for example scopegate.rules.demo) and add denials
#   through their own partial set rule `deny`.
package scopegate.authz

import data.scopegate.scopes

# The decision is always defined and always a single object: the else chain
# below yields at most one value, and this default covers every case the
# chain does not (an evaluation that came out undefined), so it denies.
default decision := {"allow": false, "status": 403, "reason": "default_deny"}

# First match wins:
#   1. allow: the input is well formed, every required scope is held (directly,
#      or through the hierarchy, which is only computed when a scope is not
#      held directly) and no rule package denies. This is the hot path, kept
#      to inline expressions: each extra rule costs allocations per request.
#   2. malformed input (an engine bug): 500 invalid_input;
#   3. missing scopes win over every other denial: 403 insufficient_scope with
#      missing_scopes, so the engine adds WWW-Authenticate with the route's
#      required scopes;
#   4. any other denial: the highest status wins, then the first reason in
#      sort order, so the result never depends on evaluation order;
#   5. step-up asks (RFC 9470) when nothing else denies: 401
#      insufficient_user_authentication with acr_values and/or max_age, which
#      the engine puts in the challenge. A client is asked to step up only
#      when stepping up would let the request through.
# Anything else (something undefined) falls through to the default deny.
# "reasons" lists every denial reason, for decision logs and `scopegate check`.
decision := {"allow": true} if {
	is_object(input.token)
	is_array(input.route.scopes)

	# Bound first so that it is always defined: `not s in input.token.scopes`
	# with no scopes claim would be undefined, and the comprehension empty.
	# Read as input.token.scopes, not object.get(input.token, ...): a policy
	# that reads only named token fields lets scopegate share its decisions
	# between tokens holding the same scopes (policies/README.md).
	held := [s | some s in input.token.scopes]
	count([s | some s in input.route.scopes; not s in held; not s in scopes.granted]) == 0

	# The same test as `count(deny) == 0`, without evaluating every denial
	# (the set is no_denial, written out: a rule reference costs more).
	count([v | v := data.scopegate.rules[_].deny; not v in {false, set(), [], {}}]) == 0
} else := {"allow": false, "status": 500, "reason": "invalid_input", "reasons": ["invalid_input"]} if {
	not valid_input
} else := {
	"allow": false,
	"status": 403,
	"reason": "insufficient_scope",
	"missing_scopes": sort(missing_scopes),
	"reasons": sort({"insufficient_scope"} | {d.reason | some d in denials}),
} if {
	count(missing_scopes) > 0
} else := {
	"allow": false,
	"status": top_status,
	"reason": top_reason,
	"reasons": sort({d.reason | some d in denials}),
} if {
	count(hard_denials) > 0
} else := object.union(
	{"allow": false, "status": 401, "reason": step_up_reason, "reasons": [step_up_reason]},
	step_up_fields,
) if {
	count(step_ups) > 0
}

# The engine always sends a token object and a list of route scopes ([] when
# the route declares none). Anything else means the input is not what the
# policy was written for.
valid_input if {
	is_object(input.token)
	is_array(input.route.scopes)
}

# Scopes the route requires (the ext_authz context extension `scopes`).
required_scopes := scopes.to_set(input.route.scopes)

# Required scopes the token does not cover, after expanding the hierarchy.
missing_scopes := required_scopes - scopes.granted

# Values of a rule package's `deny` that add nothing: a partial set or object
# rule with no match, or a boolean rule that is false.
no_denial := {false, set(), [], {}}

# Every denial from the rule packages directly under data.scopegate.rules.
#
# This is a complete rule on purpose: a `deny contains ...` written in this
# package by mistake fails to compile ("conflicting rules") instead of being
# silently ignored. Put rules in a package under scopegate.rules (README.md).
deny := {d |
	some d in as_denials(data.scopegate.rules[_].deny)
}

# A rule package's `deny` is normally a set of objects. Accept the shapes an
# author may write by mistake without ever failing open: a boolean `deny if`
# that is true, a single object, an array.
as_denials(v) := v if {
	is_set(v)
} else := v if {
	is_array(v)
} else := set() if {
	v in no_denial
} else := {v}

# Normalised denials: {"reason": non-empty string, "status": 400..599}.
denials contains {"reason": deny_reason(d), "status": deny_status(d)} if {
	some d in deny
}

deny_reason(d) := "invalid_step_up" if {
	d.reason == step_up_reason
	not valid_step_up(d)
} else := d.reason if {
	is_string(d.reason)
	d.reason != ""
} else := d if {
	is_string(d)
	d != ""
} else := "denied"

# A denial must never carry a success or redirect status: anything but an
# integer in 400..599 becomes 403.
#
# A step-up ask is always 401; one the engine could not turn into a challenge
# (see valid_step_up) is 500 invalid_step_up: a rule bug, never an allow.
deny_status(d) := 500 if {
	d.reason == step_up_reason
	not valid_step_up(d)
} else := 401 if {
	d.reason == step_up_reason
} else := d.status if {
	is_number(d.status)
	d.status >= 400
	d.status <= 599
	d.status == floor(d.status)
} else := 403

# Denials that stepping up would not cure: they win over step-up asks.
hard_denials := {d | some d in denials; d.reason != step_up_reason}

top_status := max({d.status | some d in hard_denials})

top_reason := min({d.reason | some d in hard_denials; d.status == top_status})

# Step-up (RFC 9470). A rule package asks for a stronger or more recent
# sign-in with a denial
#   {"reason": "insufficient_user_authentication", "acr_values": [...], "max_age": 300}
# (acr_values a non-empty list of strings, max_age whole seconds, at least one
# of them). The engine answers 401 with both in the WWW-Authenticate challenge.
step_up_reason := "insufficient_user_authentication"

step_ups contains d if {
	some d in deny
	d.reason == step_up_reason
	valid_step_up(d)
}

valid_step_up(d) if {
	acr_values_ok(d)
	max_age_ok(d)
	asks_something(d)
}

acr_values_ok(d) if not "acr_values" in object.keys(d)

acr_values_ok(d) if step_up_acr_list(d)

max_age_ok(d) if not "max_age" in object.keys(d)

max_age_ok(d) if is_number(step_up_max_age(d))

asks_something(d) if step_up_acr_list(d)

asks_something(d) if is_number(step_up_max_age(d))

step_up_acr_list(d) := d.acr_values if {
	is_array(d.acr_values)
	count(d.acr_values) > 0
	every a in d.acr_values {
		is_string(a)
	}
}

step_up_max_age(d) := d.max_age if {
	is_number(d.max_age)
	d.max_age >= 0
	d.max_age == floor(d.max_age)
}

# When several rules ask: the acr values every one of them accepts (in the
# order of the first list in sort order), or, if they share none, the first
# list (the other rule asks again after that sign-in); the smallest max_age.
acr_lists := {l | some d in step_ups; l := step_up_acr_list(d)}

first_acr_list := sort(acr_lists)[0]

shared_acr_values := [a | some a in first_acr_list; every l in acr_lists { a in l }]

step_up_fields["acr_values"] := shared_acr_values if {
	count(shared_acr_values) > 0
} else := first_acr_list if {
	count(acr_lists) > 0
}

step_up_fields["max_age"] := min(ages) if {
	ages := {a | some d in step_ups; a := step_up_max_age(d)}
	count(ages) > 0
}
