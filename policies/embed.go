// Package policies embeds the default scope policy (policies/scopegate), which scopegate
// authz evaluates when its config names no policy path. The Rego itself is owned and tested
// with OPA's standard tools; this file only ships it inside the binary.
package policies

import "embed"

// Default holds scopegate/*.rego and scopegate/data.json, rooted so that the data file
// lands at data.scopegate as it does when the directory is loaded from disk.
//
//go:embed scopegate/*.rego scopegate/*.json
var Default embed.FS
