// Package configcheck is what scopegate's three config files (authz, xds, idp) share once
// decoded: one way to collect every problem a file has, each naming its field, and one way
// to resolve the relative paths a file names against the file's own folder.
package configcheck

import (
	"errors"
	"fmt"
	"path/filepath"
)

// Problems collects every problem of a config, so one run reports them all. The zero value
// is ready to use.
type Problems struct{ errs []error }

// Add records a problem with field: "field: message".
func (p *Problems) Add(field, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

// Addf records a problem whose message names its own place.
func (p *Problems) Addf(format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf(format, args...))
}

// Join records an error as it is (nil is ignored): one a field's own Validate returned.
func (p *Problems) Join(err error) {
	if err != nil {
		p.errs = append(p.errs, err)
	}
}

// Err is every problem recorded, joined one per line; nil when there is none.
func (p *Problems) Err() error { return errors.Join(p.errs...) }

// Dir resolves the paths a config file names against the file's folder, as every scopegate
// config does: a relative path means "next to this file", whatever the working directory.
// The zero Dir leaves paths as they are (a config parsed from bytes, not read from a file).
type Dir string

// DirOf is the Dir of the config file at path.
func DirOf(path string) Dir { return Dir(filepath.Dir(path)) }

// Resolve rewrites each non-empty relative path in place against d.
func (d Dir) Resolve(paths ...*string) {
	if d == "" {
		return
	}
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(string(d), *p)
		}
	}
}
