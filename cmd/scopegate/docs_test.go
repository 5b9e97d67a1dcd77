package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Runnable documentation. A fenced block whose info string carries the word "runnable"
// (```sh runnable) is run by TestDocsRunnable against `scopegate dev`, the stack `make run`
// starts, so a command that no longer works as printed fails CI. The rules:
//
//   - The blocks of one file run in order, in one bash session, from the repository root:
//     a variable a block sets (AUTHZ=...) is there for the next.
//   - Each command (a line, with its "\" continuations) must exit 0, unless its trailing
//     comment, or a comment line indented under it, says "exit N".
//   - The stack listens on free ports and writes its own certificates: before running, the
//     demo's addresses (127.0.0.1:9191, localhost:9400, ...) become this run's, dev-certs/
//     its certificate directory, compose/{idp,authz.local,xds.local}.yaml the copies that
//     name them, and bin/scopegate the binary under test (also first on PATH as scopegate).
//   - $SCOPEGATE_TOKEN_CACHE and $DEMO point into a temporary directory, and
//     $SCOPEGATE_ISSUER (the token commands' default --issuer) names this run's idp.
//   - `go tool opa` runs OPA's command built with the tests' own flags (opaBinary): the
//     version go.mod's tool directive pins, which TestGoToolIsOPA checks.
//
// Commands that need Envoy, Docker, a cluster or a person at a browser stay in blocks that
// are not marked; the flow test and TestConsentInBrowser cover what they show.

// runnableDocs are the pages that must have runnable blocks (a marker deleted by mistake
// would otherwise stop the checking silently); every other page in docs/ is read too.
var runnableDocs = []string{"README.md", "docs/demo.md", "docs/troubleshooting.md", "docs/policy-lifecycle.md", "docs/kubernetes.md"}

// docCommand is one command of a runnable block.
type docCommand struct {
	file     string
	line     int // of the command's first line
	text     string
	wantExit int
}

var (
	fenceOpen = regexp.MustCompile("^```(\\S*)(.*)$")
	exitN     = regexp.MustCompile(`\bexit (\d)\b`)
)

// parseRunnable returns the commands of a page's runnable blocks.
func parseRunnable(file string, content string) ([]docCommand, error) {
	var (
		out      []docCommand
		inBlock  bool
		runnable bool
		cur      *docCommand
		curInd   int
		cont     bool
	)
	lines := strings.Split(content, "\n")
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			if !inBlock {
				m := fenceOpen.FindStringSubmatch(trimmed)
				inBlock, runnable = true, m != nil && slices.Contains(strings.Fields(m[2]), "runnable")
				cur, cont = nil, false
			} else {
				if cont {
					return nil, fmt.Errorf("%s:%d: the block ends inside a \\ continuation", file, i+1)
				}
				inBlock = false
			}
			continue
		}
		if !inBlock || !runnable {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		switch {
		case cont:
			cur.text += "\n" + line
			cont = strings.HasSuffix(trimmed, "\\")
			if !cont {
				cur.wantExit = expectedExit(line, cur.wantExit)
			}
		case trimmed == "":
			cur = nil
		case strings.HasPrefix(trimmed, "#"):
			// A comment indented under a command speaks of it; any other stands alone.
			if cur != nil && indent > curInd {
				cur.wantExit = expectedExit(trimmed, cur.wantExit)
			} else {
				cur = nil
			}
		default:
			out = append(out, docCommand{file: file, line: i + 1, text: line})
			cur, curInd = &out[len(out)-1], indent
			cont = strings.HasSuffix(trimmed, "\\")
			if !cont {
				cur.wantExit = expectedExit(line, 0)
			}
		}
	}
	return out, nil
}

// expectedExit reads "exit N" from the comment on line (the text after an unquoted #).
func expectedExit(line string, def int) int {
	c := comment(line)
	if m := exitN.FindStringSubmatch(c); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return def
}

// comment is what follows the first # that starts a shell comment on line.
func comment(line string) string {
	var quote rune
	prev := ' '
	for i, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && (prev == ' ' || prev == '\t' || i == 0):
			return line[i:]
		}
		prev = r
	}
	return ""
}

// localize rewrites a command for the test's stack (see the rules above).
func (st *devStack) localize(cmd, bin string) string {
	cmd = demoAddr.ReplaceAllStringFunc(cmd, func(a string) string {
		host, port, _ := strings.Cut(a, ":")
		if p, ok := st.ports[port]; ok {
			return host + ":" + p
		}
		return a
	})
	for from, to := range st.configs {
		cmd = strings.ReplaceAll(cmd, from, to)
	}
	cmd = strings.ReplaceAll(cmd, "dev-certs/", st.certs+"/")
	return strings.ReplaceAll(cmd, "bin/scopegate", bin)
}

var demoAddr = regexp.MustCompile(`\b(127\.0\.0\.1|localhost):(9400|9401|9191|9092|8081|18000|18001|10000)\b`)

// runCommands runs cmds in one bash session and reports each one whose exit status is not
// the expected one, with what it printed.
func runCommands(t *testing.T, st *devStack, bin, env string, cmds []docCommand) {
	t.Helper()
	var script strings.Builder
	script.WriteString("set -o pipefail\n")
	if slices.ContainsFunc(cmds, func(c docCommand) bool { return strings.Contains(c.text, "go tool opa") }) {
		fmt.Fprintf(&script, "go() { if [ \"$1 $2\" = 'tool opa' ]; then shift 2; '%s' \"$@\"; else command go \"$@\"; fi; }\n", opaBinary(t))
	}
	for i, c := range cmds {
		fmt.Fprintf(&script, "echo '::begin %d'\n%s\necho \"::end %d $?\"\n", i, st.localize(c.text, bin), i)
	}
	// Generous: a slow machine, and the signed-bundle recipe's several commands.
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = repoRoot(t)
	// On the timeout, end the whole session (a command's own children too), not only bash.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	// HOME stays: the go commands a page shows must find the build and module caches; the
	// token commands' state goes to $SCOPEGATE_TOKEN_CACHE.
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"),
		"SCOPEGATE_TOKEN_CACHE="+filepath.Join(env, "tokens.json"), "DEMO="+env, "SCOPEGATE_ISSUER=http://localhost:"+st.ports["9400"])
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the commands did not finish in 15 minutes:\n%s", out)
	}
	_ = err // the last command's status; each is checked below
	outputs := map[int]string{}
	codes := map[int]int{}
	var cur = -1
	var buf strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "::begin "); ok {
			cur, _ = strconv.Atoi(rest)
			buf.Reset()
			continue
		}
		if rest, ok := strings.CutPrefix(line, "::end "); ok {
			f := strings.Fields(rest)
			if len(f) == 2 {
				i, _ := strconv.Atoi(f[0])
				codes[i], _ = strconv.Atoi(f[1])
				outputs[i] = buf.String()
			}
			cur = -1
			continue
		}
		if cur >= 0 && buf.Len() < 4000 {
			buf.WriteString(line + "\n")
		}
	}
	for i, c := range cmds {
		code, ran := codes[i]
		switch {
		case !ran:
			t.Errorf("%s:%d: did not run (an earlier command ended the session?)\n%s\noutput:\n%s", c.file, c.line, c.text, out)
			return
		case code != c.wantExit:
			t.Errorf("%s:%d: exit %d, want %d\n%s\noutput:\n%s", c.file, c.line, code, c.wantExit, c.text, outputs[i])
		}
	}
}

// TestDocsRunnable runs every runnable block of README.md and docs/*.md, and the next steps
// `scopegate dev` prints, against a running `scopegate dev`.
func TestDocsRunnable(t *testing.T) {
	bin := binary(t)
	root := repoRoot(t)
	st := newDevStack(t)
	dev := exec.Command(bin, append([]string{"dev"}, st.flags...)...)
	dev.Dir = root
	out, done := startUntilReady(t, dev)
	t.Cleanup(func() {
		_ = dev.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = dev.Process.Kill()
		}
	})

	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append([]string{filepath.Join(root, "README.md")}, pages...)
	total := 0
	for _, p := range pages {
		rel, _ := filepath.Rel(root, p)
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		cmds, err := parseRunnable(rel, string(raw))
		if err != nil {
			t.Fatal(err)
		}
		if len(cmds) == 0 {
			if slices.Contains(runnableDocs, rel) {
				t.Errorf("%s has no runnable block (```sh runnable)", rel)
			}
			continue
		}
		total += len(cmds)
		t.Run(rel, func(t *testing.T) { runCommands(t, st, bin, t.TempDir(), cmds) })
	}
	t.Logf("%d documented commands run", total)

	// The next steps scopegate dev printed, as printed; token login, step-up and refresh need a
	// person at a browser (TestConsentInBrowser, TestTokenStepUp and the flow test cover them).
	printed := out.String()
	start, end := strings.Index(printed, "Next steps"), strings.Index(printed, "Ctrl-C stops everything.")
	if start < 0 || end < start {
		t.Fatalf("no next steps in the output:\n%s", printed)
	}
	block := printed[start:end]
	block = block[strings.Index(block, "\n")+1:]
	var keep []string
	for _, l := range strings.Split(block, "\n") {
		if strings.Contains(l, "token login") || strings.Contains(l, "token step-up") || strings.Contains(l, "token refresh") {
			continue
		}
		keep = append(keep, l)
	}
	cmds, err := parseRunnable("scopegate dev's next steps", "```sh runnable\n"+strings.Join(keep, "\n")+"\n```\n")
	if err != nil || len(cmds) < 5 {
		t.Fatalf("next steps: %d commands, %v\n%s", len(cmds), err, block)
	}
	t.Run("next steps", func(t *testing.T) { runCommands(t, st, bin, t.TempDir(), cmds) })
}

// TestGoToolIsOPA: the pages' `go tool opa` (which TestDocsRunnable runs with opaBinary's
// build) is OPA's command, named by go.mod's tool directive.
func TestGoToolIsOPA(t *testing.T) {
	cmd := exec.Command("go", "tool")
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Fields(string(out)), "github.com/open-policy-agent/opa") {
		t.Fatalf("go tool lists no github.com/open-policy-agent/opa:\n%s", out)
	}
}

// The parser itself: what a runnable block is, and how a command says what it exits with.
func TestParseRunnable(t *testing.T) {
	doc := "```sh\nnot runnable\n```\n" +
		"```sh runnable\n" +
		"A=1   # sets A\n" +
		"scopegate check --addr x \\\n    --path /   # deny: exit 1\n" +
		"scopegate check --x\n    # usage error, exit 2\n" +
		"# stands alone, exit 5\n" +
		"echo '# not a comment, exit 3'\n" +
		"```\n"
	cmds, err := parseRunnable("x.md", doc)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		line int
		exit int
	}{{5, 0}, {6, 1}, {8, 2}, {11, 0}}
	if len(cmds) != len(want) {
		t.Fatalf("%d commands: %+v", len(cmds), cmds)
	}
	for i, w := range want {
		if cmds[i].line != w.line || cmds[i].wantExit != w.exit {
			t.Errorf("command %d: line %d exit %d, want line %d exit %d (%q)", i, cmds[i].line, cmds[i].wantExit, w.line, w.exit, cmds[i].text)
		}
	}
	if _, err := parseRunnable("y.md", "```sh runnable\necho a \\\n```\n"); err == nil {
		t.Error("a block ending in a continuation parsed")
	}
}
