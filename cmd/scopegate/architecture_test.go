package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The map of the code (docs/architecture.md, README's "What is in the repository") matches
// the tree: every package is on the map, and every path the map names exists.
func TestArchitectureMatchesTree(t *testing.T) {
	root := filepath.Join("..", "..")
	arch, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	// Every path in backticks under a top folder of the code exists.
	named := regexp.MustCompile("`((?:extauthz|controlplane|internal|demo|oauthclient|cmd|bench)/[A-Za-z0-9_./-]*)`")
	for _, m := range named.FindAllStringSubmatch(string(arch), -1) {
		if _, err := os.Stat(filepath.Join(root, strings.TrimSuffix(m[1], "/"))); err != nil {
			t.Errorf("docs/architecture.md names %s, which does not exist", m[1])
		}
	}
	// Every package of the gate, the control plane, internal/ and demo/ is on both maps:
	// by its path in architecture.md, by its name in README's table.
	for _, top := range []string{"extauthz", "controlplane", "internal", "demo"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if !hasGoCode(t, p) {
				return nil
			}
			pkg := filepath.ToSlash(strings.TrimPrefix(p, root+string(filepath.Separator)))
			if !strings.Contains(string(arch), "`"+pkg+"`") {
				t.Errorf("package %s is not on docs/architecture.md's map", pkg)
			}
			if pkg != top && !strings.Contains(string(readme), "`"+filepath.Base(pkg)+"`") {
				t.Errorf("package %s is not named in README's \"What is in the repository\"", pkg)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// hasGoCode reports whether dir holds a non-test Go file.
func hasGoCode(t *testing.T, dir string) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			return true
		}
	}
	return false
}
