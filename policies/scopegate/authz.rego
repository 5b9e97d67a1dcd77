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
#      sort order, so the result never depends on evaluation order.
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
	count(denials) > 0
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

deny_reason(d) := d.reason if {
	is_string(d.reason)
	d.reason != ""
} else := d if {
	is_string(d)
	d != ""
} else := "denied"

# A denial must never carry a success or redirect status: anything but an
# integer in 400..599 becomes 403.
deny_status(d) := d.status if {
	is_number(d.status)
	d.status >= 400
	d.status <= 599
	d.status == floor(d.status)
} else := 403

top_status := max({d.status | some d in denials})

top_reason := min({d.reason | some d in denials; d.status == top_status})
