package routes

// Envoy folds case in ASCII only (absl's ...IgnoreCase functions), so these do too: a
// Unicode fold would let "K" (the Kelvin sign) match "k" where Envoy does not.

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// lowerInto appends s lower-cased (ASCII) to dst; with dst a stack buffer big enough, it
// does not allocate.
func lowerInto(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		dst = append(dst, lowerByte(s[i]))
	}
	return dst
}

func lowerASCII(s string) string { return string(lowerInto(nil, s)) }

// equalPart compares two strings of equal length, folding ASCII case when fold is set.
func equalPart(a, b string, fold bool) bool {
	if !fold {
		return a == b
	}
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerByte(a[i]) != lowerByte(b[i]) {
			return false
		}
	}
	return true
}

// containsFold reports whether lowerSub (already lower case) occurs in s, folding s's case.
func containsFold(s, lowerSub string) bool {
	for i := 0; i+len(lowerSub) <= len(s); i++ {
		if equalPart(s[i:i+len(lowerSub)], lowerSub, true) {
			return true
		}
	}
	return false
}
