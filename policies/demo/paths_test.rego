package demo.paths_test

import data.scopegate.authz
import data.scopegate.rules.demo

orders_input := {
	"request": {
		"method": "GET",
		"path": "/orders/1",
		"path_segments": ["orders", "1"],
		"query": {},
		"host": "api.example.test",
		"scheme": "https",
		"headers": {},
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

# The raw path and its decoded segments, as the engine hands them over.
with_path(path, segments) := object.union(orders_input, {"request": {"path": path, "path_segments": segments}})

suspicious := {"allow": false, "status": 400, "reason": "suspicious_path", "reasons": ["suspicious_path"]}

test_suspicious_paths[note] if {
	some note, tc in {
		"dot-dot": {"path": "/orders/../admin", "segments": ["orders", "..", "admin"]},
		"dot": {"path": "/orders/./1", "segments": ["orders", ".", "1"]},
		"encoded dot-dot": {"path": "/orders/%2e%2e/1", "segments": ["orders", "..", "1"]},
		"encoded slash": {"path": "/orders/1%2F..%2F..%2Fadmin", "segments": ["orders", "1/../../admin"]},
		"encoded backslash": {"path": "/orders/..%5Cadmin", "segments": ["orders", "..\\admin"]},
		"raw backslash": {"path": "/orders/1\\admin", "segments": ["orders", "1\\admin"]},
		"NUL byte": {"path": "/orders/1%00.json", "segments": ["orders", "1\u0000.json"]},
		"double-encoded dot-dot": {"path": "/orders/%252e%252e/admin", "segments": ["orders", "%2e%2e", "admin"]},
		"double-encoded slash": {"path": "/orders/1%252Fadmin", "segments": ["orders", "1%2Fadmin"]},
		"double-encoded backslash": {"path": "/orders/1%255cadmin", "segments": ["orders", "1%5cadmin"]},
		"triple-encoded dot": {"path": "/orders/%25252e", "segments": ["orders", "%252e"]},
		"undecodable segment keeps an escape": {"path": "/orders/%zz%2e%2e", "segments": ["orders", "%zz%2e%2e"]},
	}
	got := authz.decision with input as with_path(tc.path, tc.segments)
	got == suspicious
}

test_ordinary_paths[note] if {
	some note, tc in {
		"plain": {"path": "/orders/1", "segments": ["orders", "1"]},
		"collection": {"path": "/orders", "segments": ["orders"]},
		"trailing slash": {"path": "/orders/", "segments": ["orders", ""]},
		"double slash inside": {"path": "/orders//1", "segments": ["orders", "", "1"]},
		"dots inside a name": {"path": "/orders/1.json", "segments": ["orders", "1.json"]},
		"three dots": {"path": "/orders/...", "segments": ["orders", "..."]},
		"percent sign": {"path": "/orders/100%25", "segments": ["orders", "100%"]},
		"undecodable segment": {"path": "/orders/%zz", "segments": ["orders", "%zz"]},
		"unicode": {"path": "/orders/%C3%BCn%C3%AFc%C3%B8d%C3%A9", "segments": ["orders", "ünïcødé"]},
		"space": {"path": "/orders/a%20b", "segments": ["orders", "a b"]},
	}
	got := authz.decision with input as with_path(tc.path, tc.segments)
	got == {"allow": true}
}

# Missing scopes still take precedence over the path check.
test_missing_scopes_before_suspicious_path if {
	inp := object.union(with_path("/orders/../admin", ["orders", "..", "admin"]), {"token": {"scopes": []}})
	got := authz.decision with input as inp
	got.status == 403
	got.reason == "insufficient_scope"
	got.reasons == ["insufficient_scope", "suspicious_path"]
}

test_deny_set_entry if {
	got := demo.deny with input as with_path("/orders/..", ["orders", ".."])
	got == {{"reason": "suspicious_path", "status": 400}}
}

# The segment check on its own, without the raw-path shortcut.
test_suspicious_segment[note] if {
	some note, tc in {
		"dot": {"s": ".", "want": true},
		"dot-dot": {"s": "..", "want": true},
		"slash": {"s": "a/b", "want": true},
		"backslash": {"s": "a\\b", "want": true},
		"NUL": {"s": "a\u0000", "want": true},
		"escape left, upper case": {"s": "%2E", "want": true},
		"escaped percent left": {"s": "%25", "want": true},
		"plain": {"s": "orders", "want": false},
		"empty": {"s": "", "want": false},
		"three dots": {"s": "...", "want": false},
		"lone percent": {"s": "100%", "want": false},
		"other escape left": {"s": "%41", "want": false},
	}
	got := is_suspicious(tc.s)
	got == tc.want
}

is_suspicious(s) if {
	demo.suspicious_segment(s)
} else := false
