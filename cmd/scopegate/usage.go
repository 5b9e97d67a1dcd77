package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/scopegate/scopegate/internal/yamlfile"
)

// flagAliases are other spellings each command accepts for a flag: one name is documented,
// the other still works (check's route scopes and token's requested scopes are both
// --scope, the OAuth parameter's name).
var flagAliases = map[string]string{"scopes": "scope"}

// setupCLI makes every command's flags read and print the same way: aliases, "did you mean"
// for a misspelt flag, and help without pflag's `--flag[=true|false]` for booleans.
func setupCLI(root *cobra.Command) {
	root.SetGlobalNormalizationFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if to, ok := flagAliases[name]; ok {
			return pflag.NormalizedName(to)
		}
		return pflag.NormalizedName(name)
	})
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageErr(suggestFlag(cmd, err))
	})
	cobra.AddTemplateFunc("flagUsages", flagUsages)
	t := root.UsageTemplate()
	t = strings.ReplaceAll(t, ".LocalFlags.FlagUsages", "flagUsages .LocalFlags")
	t = strings.ReplaceAll(t, ".InheritedFlags.FlagUsages", "flagUsages .InheritedFlags")
	root.SetUsageTemplate(t)
}

// suggestFlag adds the nearest known flag to pflag's "unknown flag: --x".
func suggestFlag(cmd *cobra.Command, err error) error {
	name, ok := strings.CutPrefix(err.Error(), "unknown flag: --")
	if !ok {
		return err
	}
	var known []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !f.Hidden {
			known = append(known, f.Name)
		}
	})
	best, bestD := "", 3
	if len(name) <= 4 {
		bestD = 2
	}
	for _, k := range known {
		d := yamlfile.Distance(name, k)
		if strings.HasPrefix(k, name) || strings.HasPrefix(name, k) {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath())
	}
	return errors.New(err.Error() + "; did you mean --" + best + "?")
}

// flagUsages is pflag's FlagUsages with a boolean flag shown as `--flag`, as it is used,
// rather than `--flag[=true|false]`, the columns aligned again.
func flagUsages(fs *pflag.FlagSet) string {
	type row struct {
		left, right string
		cont        bool // a continuation line of the previous row's usage
	}
	var rows []row
	width := 0
	for _, line := range strings.Split(strings.TrimRight(fs.FlagUsages(), "\n"), "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if !strings.HasPrefix(trimmed, "-") {
			rows = append(rows, row{right: trimmed, cont: true})
			continue
		}
		indent := line[:len(line)-len(trimmed)]
		left, right, _ := strings.Cut(trimmed, "  ")
		left = indent + strings.ReplaceAll(left, "[=true|false]", "")
		rows = append(rows, row{left: left, right: strings.TrimLeft(right, " ")})
		width = max(width, len(left))
	}
	var b strings.Builder
	for _, r := range rows {
		if r.cont {
			b.WriteString(strings.Repeat(" ", width+3) + r.right + "\n")
			continue
		}
		b.WriteString(r.left + strings.Repeat(" ", width-len(r.left)+3) + r.right + "\n")
	}
	return b.String()
}

// usageIfBare prints the command's usage and fails (exit 2) when no flag at all was given:
// a bare `scopegate check` is a question about how to use it, not a request to decide.
func usageIfBare(cmd *cobra.Command) error {
	if cmd.Flags().NFlag() > 0 {
		return nil
	}
	_ = cmd.Usage()
	return &exitError{code: 2, err: errors.New("no flags given: see the usage above"), quiet: true}
}
