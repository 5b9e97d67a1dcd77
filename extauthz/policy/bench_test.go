package policy

import (
	"context"
	"testing"

	"github.com/scopegate/scopegate/policies"
)

// BenchmarkEval is what a decision costs when it is evaluated, not reused: the default
// policy, the repository's policies/ (with the demo rules), and a constant policy (OPA's
// floor for any query), with the input built once.
func BenchmarkEval(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"constant", Options{}},
		{"default", Options{FS: policies.Default}},
		{"demo", Options{Path: "../../policies"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			o := tc.opts
			if o.FS == nil && o.Path == "" {
				dir := b.TempDir()
				writePolicy(b, dir, "package scopegate.authz\ndecision := {\"allow\": true}\n")
				o.Path = dir
			}
			e, err := New(context.Background(), o)
			if err != nil {
				b.Fatal(err)
			}
			in := sampleInput("orders:read", "orders:write")
			rev := e.Revision()
			b.ReportAllocs()
			for b.Loop() {
				if d, err := e.Eval(context.Background(), rev, in); err != nil || !d.Allow {
					b.Fatal(d, err)
				}
			}
		})
	}
}
