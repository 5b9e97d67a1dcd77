package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the repository root (the Makefile and compose/ live there).
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// builtOnce is a program the tests build once per run, into a temp dir TestMain removes.
type builtOnce struct {
	once sync.Once
	path string
	err  error
}

var scopegateBin, opaBin builtOnce

// get builds the program as name with the command build returns for its path, the first time.
func (b *builtOnce) get(t *testing.T, name string, build func(path string) *exec.Cmd) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "scopegate-"+name+"-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, name)
		cmd := build(b.path)
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// buildVars are the make variables that build bin/scopegate with this test binary's own
// flags (race detector, cgo as go test has it), so make build links the packages go test
// already compiled rather than compiling the whole graph again without them (minutes on a
// cold cache). The processes the tests start then run under the race detector too.
func buildVars() []string {
	vars := []string{"BUILD_CGO=" + os.Getenv("CGO_ENABLED"), "BUILD_FLAGS="}
	if raceBuild {
		vars = []string{"BUILD_CGO=1", "BUILD_FLAGS=-race"}
	}
	return vars
}

// binary builds bin/scopegate with `make build` (see buildVars), once per test run, into a
// temp dir.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make on PATH")
	}
	return scopegateBin.get(t, "scopegate", func(path string) *exec.Cmd {
		return exec.Command("make", append([]string{"-s", "build", "BIN=" + path}, buildVars()...)...)
	})
}

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, b := range []*builtOnce{&scopegateBin, &opaBin} {
		if b.path != "" {
			os.RemoveAll(filepath.Dir(b.path))
		}
	}
	os.Exit(code)
}

// opaBinary builds OPA's command, at the version go.mod pins, with this test binary's flags
// (-race under -race: it links from the packages the tests compiled, where `go tool opa`,
// which takes no build flags, compiles OPA's 770 packages again without the race detector).
// TestDocsRunnable runs the pages' `go tool opa` with it.
func opaBinary(t *testing.T) string {
	t.Helper()
	return opaBin.get(t, "opa", func(path string) *exec.Cmd {
		args := []string{"build", "-o", path}
		if raceBuild {
			args = append(args, "-race")
		}
		return exec.Command("go", append(args, "github.com/open-policy-agent/opa")...)
	})
}

// devConfigs writes the compose demo's configs with every port replaced by a free one, and
// returns the flags that point `scopegate dev` at them and the addresses it will bind.
func devConfigs(t *testing.T) (flags []string, addrs []string) {
	t.Helper()
	st := newDevStack(t)
	return st.flags, st.addrs
}

// devStack is `scopegate dev`'s configuration for a test: the compose demo's configs with
// every port replaced by a free one, in dir, with the demo certificates under certs.
type devStack struct {
	flags, addrs []string
	ports        map[string]string // the demo's port -> this run's
	dir, certs   string
	configs      map[string]string // compose/NAME -> the rewritten copy
}

func newDevStack(t *testing.T) *devStack {
	t.Helper()
	var addrs []string
	root := repoRoot(t)
	// The demo's fixed ports, as they appear in compose/*.yaml, each mapped to a free port.
	ports := []string{"9400", "9401", "9191", "9092", "8081", "18000", "18001", "10000"}
	repl := map[string]string{}
	var hold []net.Listener
	for _, p := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hold = append(hold, ln)
		_, free, _ := net.SplitHostPort(ln.Addr().String())
		repl[p] = free
		if p != "10000" { // Envoy's listener: nothing binds it without Envoy
			addrs = append(addrs, "127.0.0.1:"+free)
		}
	}
	for _, ln := range hold {
		ln.Close()
	}
	dir := t.TempDir()
	write := func(name string) string {
		raw, err := os.ReadFile(filepath.Join(root, "compose", name))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, line := range strings.Split(string(raw), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "#") {
				for from, to := range repl {
					line = strings.ReplaceAll(line, from, to)
				}
				// paths are relative to the config's folder (compose/), which the copy leaves
				line = strings.ReplaceAll(line, " ../policies", " "+filepath.Join(root, "policies"))
				line = strings.ReplaceAll(line, "client_secret_file: introspection-secret", "client_secret_file: "+filepath.Join(root, "compose", "introspection-secret"))
				// the certificates scopegate dev writes, wherever a config names them
				line = strings.ReplaceAll(line, "../dev-certs/", filepath.Join(dir, "certs")+"/")
			}
			out = append(out, line)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Join(out, "\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	st := &devStack{addrs: addrs, ports: repl, dir: dir, certs: filepath.Join(dir, "certs"), configs: map[string]string{}}
	for _, name := range []string{"idp.yaml", "authz.local.yaml", "xds.local.yaml"} {
		st.configs["compose/"+name] = write(name)
	}
	st.flags = []string{"--no-envoy", "--certs-dir", st.certs, "--idp-config", st.configs["compose/idp.yaml"], "--authz-config", st.configs["compose/authz.local.yaml"],
		"--xds-config", st.configs["compose/xds.local.yaml"], "--api-listen", "127.0.0.1:" + repl["8081"]}
	return st
}

// lineWriter is stdout/stderr of a child: it keeps everything and closes ready when a line
// containing marker arrives.
type lineWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	ready  chan struct{}
	once   sync.Once
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.marker) {
		w.once.Do(func() { close(w.ready) })
	}
	return len(p), nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// startUntilReady starts cmd and waits until `scopegate dev` prints that the demo is running.
func startUntilReady(t *testing.T, cmd *exec.Cmd) (out *lineWriter, done chan error) {
	t.Helper()
	out = &lineWriter{marker: "the demo is running", ready: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done = make(chan error, 1)
	// Wait returns once the process has exited and every holder of its output pipe (the
	// exec'd scopegate dev under make) has closed it: the stack is gone.
	go func() { done <- cmd.Wait() }()
	select {
	case <-out.ready:
	case err := <-done:
		t.Fatalf("exited before it was ready: %v\n%s", err, out)
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("not ready after 90s\n%s", out)
	}
	return out, done
}

func waitExit(t *testing.T, cmd *exec.Cmd, out *lineWriter, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("still running 30s after the signal\n%s", out)
	}
	return nil
}

func assertPortsFree(t *testing.T, addrs []string) {
	t.Helper()
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s still held after exit: %v", a, err)
			continue
		}
		ln.Close()
	}
}

// TestDevStopsOnSignal: the built `scopegate dev` stops every service on SIGTERM, SIGINT or SIGHUP,
// exits 0 and frees all seven ports.
func TestDevStopsOnSignal(t *testing.T) {
	bin := binary(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			flags, addrs := devConfigs(t)
			cmd := exec.Command(bin, append([]string{"dev"}, flags...)...)
			cmd.Dir = repoRoot(t)
			out, done := startUntilReady(t, cmd)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if err := waitExit(t, cmd, out, done); err != nil {
				t.Fatalf("exit: %v, want 0\n%s", err, out)
			}
			if !strings.Contains(out.String(), "stopping the demo stack") {
				t.Errorf("no graceful stop logged\n%s", out)
			}
			assertPortsFree(t, addrs)
		})
	}
}

// TestMakeRunStopsOnSignal: `make run` is what a user starts, and stops with Ctrl-C (SIGINT
// to the terminal's process group), or with any of `kill -INT`, `kill -TERM`, `kill -HUP` or
// `kill -9` on make's pid alone. GNU make forwards only SIGTERM; for SIGINT and SIGHUP it
// waits for its child, so --stop-with-parent watches make for them; for SIGKILL make dies and
// the kernel tells the child. Each must leave no process holding the demo's ports.
func TestMakeRunStopsOnSignal(t *testing.T) {
	bin := binary(t)
	tests := []struct {
		name  string
		sig   syscall.Signal
		group bool
	}{
		{"ctrl-c", syscall.SIGINT, true},
		{"kill -INT", syscall.SIGINT, false},
		{"kill -TERM", syscall.SIGTERM, false},
		{"kill -HUP", syscall.SIGHUP, false},
		{"kill -9", syscall.SIGKILL, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			flags, addrs := devConfigs(t)
			// make must start with every signal at its default, as from a terminal: a test
			// run under nohup would hand it SIGHUP ignored, and make keeps an ignored
			// signal ignored. A handler here resets it to the default across exec.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP, syscall.SIGINT)
			defer signal.Stop(hup)
			cmd := exec.Command("make", append([]string{"-s", "run", "BIN=" + bin, "RUN_FLAGS=" + strings.Join(flags, " ")}, buildVars()...)...)
			cmd.Dir = repoRoot(t)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group, as a terminal job
			out, done := startUntilReady(t, cmd)
			pid := cmd.Process.Pid
			if tt.group {
				pid = -pid
			}
			if err := syscall.Kill(pid, tt.sig); err != nil {
				t.Fatal(err)
			}
			err := waitExit(t, cmd, out, done)
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "stopping the demo stack") {
				t.Errorf("scopegate dev did not stop gracefully\n%s", out)
			}
			assertPortsFree(t, addrs)
		})
	}
}

// TestPortInUse: a port already taken names the address and the setting to change.
func TestPortInUse(t *testing.T) {
	bin := binary(t)
	flags, addrs := devConfigs(t)
	taken, err := net.Listen("tcp", addrs[2]) // authz's gRPC listen
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cmd := exec.Command(bin, append([]string{"dev"}, flags...)...)
	cmd.Dir = repoRoot(t)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit %v, want 2\n%s", err, out)
	}
	for _, want := range []string{"authz (--authz-config ", "listen " + addrs[2], "already in use", "change listen"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
