package policies

import (
	"os"
	"strings"
	"testing"
)

// The step-up example in README.md is the demo's rule as it is: the block shown is the file
// without its header comment, so the documented rule is the tested one.
func TestReadmeStepUpExampleIsTheDemoRule(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	rule, err := os.ReadFile("demo/stepup.rego")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "## Step-up authentication\n")
	if !ok {
		t.Fatal("README.md has no Step-up authentication section")
	}
	_, block, ok := strings.Cut(section, "```rego\n")
	if !ok {
		t.Fatal("the section shows no rego block")
	}
	block, _, _ = strings.Cut(block, "```")
	_, code, ok := strings.Cut(string(rule), "package scopegate.rules.demo\n")
	if !ok {
		t.Fatal("demo/stepup.rego has no package line")
	}
	if want := "package scopegate.rules.demo\n" + code; block != want {
		t.Fatalf("README.md's step-up example differs from demo/stepup.rego:\n--- README\n%s\n--- demo/stepup.rego\n%s", block, want)
	}
}
