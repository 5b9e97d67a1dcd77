# Demo step-up rule (the package's METADATA is in admin.rego).
#
#   A second factor for large orders (RFC 9470 step-up, asked by a rule): a
#   POST on the orders-write route whose x-order-amount header is above
#   data.demo.step_up.order_amount_above needs a token whose acr is one of
#   data.demo.step_up.acr_values. Otherwise the answer is 401
#   insufficient_user_authentication naming those values, and the client signs
#   in again with a second factor (`scopegate token step-up`). An amount that
#   is not a plain number is refused (400 invalid_order_amount): a value the
#   rule can't read is never taken as small.
#
#   The amount comes from a request header: trust it only from a hop you
#   control (a gateway or BFF that computed it, with Envoy removing any value a
#   client sent). In the demo the client states it, which is good for showing
#   the challenge and nothing else.
package scopegate.rules.demo

default order_amount_threshold := 1000

order_amount_threshold := data.demo.step_up.order_amount_above if is_number(data.demo.step_up.order_amount_above)

default second_factor_acrs := ["urn:scopegate:demo:mfa"]

second_factor_acrs := data.demo.step_up.acr_values if {
	is_array(data.demo.step_up.acr_values)
	count(data.demo.step_up.acr_values) > 0
}

# The header as sent, on the one route and method the rule is about.
order_amount_header := input.request.headers["x-order-amount"] if {
	input.route.name == "orders-write"
	input.request.method == "POST"
}

# A plain decimal amount: digits, optionally a fraction. Checked before
# to_number, which fails (an error, not false) on anything else.
order_amount := to_number(order_amount_header) if regex.match(`^[0-9]{1,12}(\.[0-9]{1,4})?$`, order_amount_header)

second_factor if input.token.acr in second_factor_acrs

deny contains {"reason": "insufficient_user_authentication", "status": 401, "acr_values": second_factor_acrs} if {
	order_amount > order_amount_threshold
	not second_factor
}

deny contains {"reason": "invalid_order_amount", "status": 400} if {
	order_amount_header
	not order_amount
}
