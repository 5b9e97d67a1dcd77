// Package golden is the one way scopegate's golden-file tests read or rewrite their files:
// with -update the test's output replaces the file, otherwise the file is what the output is
// compared with.
package golden

import (
	"os"
	"testing"
)

// Want returns the golden file at path for the caller to compare got with. With update it
// writes got to path instead and returns ok false: there is nothing to compare. regen is the
// command that rewrites the file, named when the file cannot be read.
func Want(t testing.TB, path string, got []byte, update bool, regen string) (want []byte, ok bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return nil, false
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run %s)", err, regen)
	}
	return want, true
}
