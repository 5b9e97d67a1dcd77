package policy

import (
	"context"
	"testing"

	"github.com/scopegate/scopegate/policies"
)

// BenchmarkEval is the policy's own cost per Check: the default policy against a constant
// policy (OPA's floor for any query), with the input built once.
func BenchmarkEval(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"constant", Options{}},
		{"default", Options{FS: policies.Default}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			o := tc.opts
			if o.FS == nil {
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
