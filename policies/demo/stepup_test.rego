package demo.stepup_test

import data.scopegate.authz

order_input := {
	"request": {
		"method": "POST",
		"path": "/orders",
		"path_segments": ["orders"],
		"query": {},
		"host": "api.example.test",
		"scheme": "https",
		"headers": {},
		"source_address": "10.0.0.7:51234",
		"protocol": "HTTP/1.1",
	},
	"route": {"name": "orders-write", "scopes": ["orders:write"], "mode": ""},
	"token": {
		"issuer": "demo",
		"iss": "https://idp.example.test",
		"sub": "alice",
		"client_id": "orders-cli",
		"aud": ["orders-api"],
		"scopes": ["orders:read", "orders:write"],
		"exp": 4102444800,
		"iat": 1700000000,
		"jti": "jti-1",
		"acr": "urn:scopegate:demo:password",
		"amr": ["pwd"],
		"auth_time": 1700000000,
		"claims": {},
	},
}

# An order with the given headers, method, route and token acr.
order(headers, method, route, acr) := object.union(order_input, {
	"request": {"headers": headers, "method": method},
	"route": {"name": route},
	"token": {"acr": acr},
})

password := "urn:scopegate:demo:password"

mfa := "urn:scopegate:demo:mfa"

step_up := {
	"allow": false,
	"status": 401,
	"reason": "insufficient_user_authentication",
	"reasons": ["insufficient_user_authentication"],
	"acr_values": [mfa],
}

allow := {"allow": true}

# The shipped data: above 1000 needs urn:scopegate:demo:mfa.
test_order_amount[note] if {
	some note, tc in {
		"large order, password only": {"in": order({"x-order-amount": "5000"}, "POST", "orders-write", password), "want": step_up},
		"large order with a fraction": {"in": order({"x-order-amount": "1000.01"}, "POST", "orders-write", password), "want": step_up},
		"large order, no acr": {"in": order({"x-order-amount": "5000"}, "POST", "orders-write", ""), "want": step_up},
		"large order, second factor": {"in": order({"x-order-amount": "5000"}, "POST", "orders-write", mfa), "want": allow},
		"at the threshold": {"in": order({"x-order-amount": "1000"}, "POST", "orders-write", password), "want": allow},
		"small order": {"in": order({"x-order-amount": "12.50"}, "POST", "orders-write", password), "want": allow},
		"no amount": {"in": order({}, "POST", "orders-write", password), "want": allow},
		"another method": {"in": order({"x-order-amount": "5000"}, "PATCH", "orders-write", password), "want": allow},
		"another route": {"in": order({"x-order-amount": "5000"}, "POST", "orders-read", password), "want": allow},
		"not a number": {
			"in": order({"x-order-amount": "lots"}, "POST", "orders-write", password),
			"want": {"allow": false, "status": 400, "reason": "invalid_order_amount", "reasons": ["invalid_order_amount"]},
		},
		"a sign": {
			"in": order({"x-order-amount": "-5000"}, "POST", "orders-write", password),
			"want": {"allow": false, "status": 400, "reason": "invalid_order_amount", "reasons": ["invalid_order_amount"]},
		},
		"an exponent": {
			"in": order({"x-order-amount": "5e3"}, "POST", "orders-write", password),
			"want": {"allow": false, "status": 400, "reason": "invalid_order_amount", "reasons": ["invalid_order_amount"]},
		},
		"a bad amount wins over step-up": {
			"in": order({"x-order-amount": "5000;1"}, "POST", "orders-write", password),
			"want": {"allow": false, "status": 400, "reason": "invalid_order_amount", "reasons": ["invalid_order_amount"]},
		},
	}
	got := authz.decision with input as tc.in
	got == tc.want
}

# The threshold and the acr values are data.
test_order_amount_data if {
	got := authz.decision with input as order({"x-order-amount": "200"}, "POST", "orders-write", mfa)
		with data.demo.step_up as {"order_amount_above": 100, "acr_values": ["urn:hwk"]}
	got == object.union(step_up, {"acr_values": ["urn:hwk"]})
}

# Missing or broken data falls back to the defaults, never to "no step-up".
test_order_amount_data_missing if {
	got := authz.decision with input as order({"x-order-amount": "5000"}, "POST", "orders-write", password)
		with data.demo.step_up as {"order_amount_above": "a lot", "acr_values": []}
	got == step_up
}
