# Demo API, ambiguous paths.
#
# Defence in depth behind Envoy's own path normalisation
# (normalize_path, merge_slashes, path_with_escaped_slashes_action): deny
# a path whose decoded segments could be read differently by the upstream
# than by Envoy's route match. A dot segment ("/orders/../admin"), an
# encoded slash or backslash ("/orders%2F..%2Fadmin"), a NUL byte, or a
# segment still holding an escape after decoding (double encoding such as
# "%252e%252e") is answered with 400 suspicious_path.
# Empty segments ("//") are left alone here: admin.rego already skips them.
# (Package-level METADATA for scopegate.rules.demo lives in admin.rego: OPA
# allows one per package.)
package scopegate.rules.demo

# Escapes that should not survive one round of decoding (lower-case: the
# segment is lower-cased before the check).
suspicious_escapes := ["%2e", "%2f", "%5c", "%00", "%25"]

suspicious_segment(s) if s in {".", ".."}

suspicious_segment(s) if contains(s, "/")

suspicious_segment(s) if contains(s, "\\")

suspicious_segment(s) if contains(s, "\u0000")

suspicious_segment(s) if {
	contains(s, "%")
	some e in suspicious_escapes
	contains(lower(s), e)
}

# The raw path is looked at first, so that ordinary requests skip the segment
# scan: every suspicious decoded segment comes from a raw path holding a dot,
# a percent escape or a backslash.
deny contains {"reason": "suspicious_path", "status": 400} if {
	some c in [".", "%", "\\"]
	contains(input.request.path, c)
	some s in input.request.path_segments
	suspicious_segment(s)
}
