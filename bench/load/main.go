package load

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Launchers start the servers under test as processes: the floor and the in-process authz
// variant are this harness's own binary (self, with selfEnv), scopegate authz is scopegateBin
// (empty: the in-process variant stands in, as in the smoke test).
func Launchers(self string, selfEnv []string, scopegateBin string) (floor, authz Launcher, profile func(addr, cfg, prof string) ([]string, []string)) {
	floor = func(addr, _ string) ([]string, []string) { return []string{self, "floor", "--listen", addr}, selfEnv }
	authz = func(_, cfg string) ([]string, []string) { return []string{self, "authz", "--config", cfg}, selfEnv }
	if scopegateBin != "" {
		authz = func(_, cfg string) ([]string, []string) { return []string{scopegateBin, "authz", "--config", cfg}, nil }
	}
	profile = func(_, cfg, prof string) ([]string, []string) {
		return []string{self, "authz", "--config", cfg, "--cpuprofile", prof, "--runtime-stats", prof + ".runtime.json"}, selfEnv
	}
	return floor, authz, profile
}

// Main is the scopegate-loadbench command line:
//
//	scopegate-loadbench [run] [-smoke] [-out DIR] [-scopegate BIN] ...   the benchmark
//	scopegate-loadbench floor --listen ADDR                               the no-op ext_authz server
//	scopegate-loadbench authz --config FILE [--cpuprofile FILE]           scopegate authz in this process
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	sub := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("scopegate-loadbench "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var err error
	switch sub {
	case "floor":
		listen := fs.String("listen", "127.0.0.1:9191", "gRPC listen address")
		if fs.Parse(args) != nil {
			return 2
		}
		err = ServeFloor(ctx, *listen)
	case "authz":
		cfg := fs.String("config", "", "authz config file (YAML)")
		prof := fs.String("cpuprofile", "", "write a CPU profile here (profiling starts on SIGUSR1, stops on exit)")
		stats := fs.String("runtime-stats", "", "with -cpuprofile: write the runtime's GC, scheduling and lock figures of the profiled stretch here (JSON)")
		if fs.Parse(args) != nil {
			return 2
		}
		err = serveAuthz(ctx, *cfg, *prof, *stats)
	case "render":
		in := fs.String("in", filepath.Join("bench", "results", "load.json"), "a load.json written by run")
		if fs.Parse(args) != nil {
			return 2
		}
		err = render(*in, stdout)
	case "run":
		err = runCmd(ctx, fs, args, stdout, stderr)
		if err == flag.ErrHelp {
			return 0
		}
	default:
		fmt.Fprintf(stderr, "scopegate-loadbench: unknown subcommand %q (run, render, floor, authz)\n", sub)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "scopegate-loadbench:", err)
		return 1
	}
	return 0
}

func runCmd(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	smoke := fs.Bool("smoke", false, "a short run: about a second per case, one concurrency level, one round")
	out := fs.String("out", "", "write load.json, load.svg (and the profile) here (default bench/results, none with -smoke)")
	sgBin := fs.String("scopegate", "", "scopegate binary (default: go build ./cmd/scopegate into a temp dir)")
	rounds := fs.Int("rounds", 0, "rounds of floor, scopegate, scopegate-default (default 2; 1 with -smoke)")
	servers := fs.String("servers", "", "comma-separated servers under test, in run order: floor, scopegate, scopegate-default (default all)")
	dur := fs.Duration("duration", 0, "per closed-loop point (default 5s)")
	conc := fs.String("concurrency", "", "comma-separated worker counts (default 1,4,16,64)")
	noProfile := fs.Bool("no-profile", false, "skip the CPU profile run")
	pin := fs.Bool("pin", false, "pin the harness to CPU 0 and each server to CPU 1 (GOMAXPROCS=1); issue 6's goals are not judged on such a run")
	olFractions := fs.String("open-loop-fractions", "", "comma-separated open-loop arrival rates as fractions of the floor's warm saturation rate in the same round (default 0.1,0.25,0.5; 0.25,0.5 with -smoke; issue 6's goal is judged at 0.5, issue 20's at 0.25 and 0.5)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o := FullOptions()
	if *smoke {
		o = SmokeOptions()
	} else if *out == "" {
		*out = filepath.Join("bench", "results")
	}
	if *rounds > 0 {
		o.Rounds = *rounds
	}
	if *dur > 0 {
		o.Duration = *dur
	}
	if *conc != "" {
		o.Concurrency = nil
		for f := range strings.SplitSeq(*conc, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 1024 {
				return fmt.Errorf("-concurrency: %q", f)
			}
			o.Concurrency = append(o.Concurrency, n)
		}
	}
	if *olFractions != "" {
		o.OpenLoopFractions = nil
		for f := range strings.SplitSeq(*olFractions, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || !(v > 0 && v <= 1) {
				return fmt.Errorf("-open-loop-fractions: %q is not a fraction in (0, 1]", f)
			}
			o.OpenLoopFractions = append(o.OpenLoopFractions, v)
		}
	}
	if *servers != "" {
		o.Servers = nil
		for f := range strings.SplitSeq(*servers, ",") {
			name := strings.TrimSpace(f)
			if !slices.Contains(Servers, name) || slices.Contains(o.Servers, name) {
				return fmt.Errorf("-servers: %q is not one of %s (each once)", f, strings.Join(Servers, ", "))
			}
			o.Servers = append(o.Servers, name)
		}
		// Run order: the floor first, whose saturation sets every server's open-loop rates.
		slices.SortFunc(o.Servers, func(a, b string) int { return slices.Index(Servers, a) - slices.Index(Servers, b) })
	}
	if *noProfile {
		o.ProfileDuration = 0
	}
	o.Pin = *pin
	o.OutDir, o.Progress = *out, stderr
	o.Command = os.Getenv("LOADBENCH_COMMAND")
	if o.Command == "" {
		o.Command = strings.Join(append([]string{"scopegate-loadbench"}, os.Args[1:]...), " ")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if *sgBin == "" {
		tmp, err := os.MkdirTemp("", "scopegate-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*sgBin = filepath.Join(tmp, "scopegate")
		o.logf("building %s", *sgBin)
		if err := buildScopegate(ctx, *sgBin, stderr); err != nil {
			return err
		}
	}
	o.Floor, o.Authz, o.AuthzProfile = Launchers(self, nil, *sgBin)
	o.PprofBinary = self
	start := time.Now()
	rep, err := Run(ctx, o)
	if err != nil {
		return err
	}
	o.logf("done in %s", time.Since(start).Round(time.Second))
	fmt.Fprint(stdout, rep.Markdown())
	return nil
}

// render redraws load.svg beside a load.json (after a change to the chart, without a new
// run) and prints the Markdown tables.
func render(in string, stdout io.Writer) error {
	raw, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var rep Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if len(rep.Summary) == 0 {
		return fmt.Errorf("%s: no summary: not a load.json written by run", in)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(in), "load.svg"), []byte(rep.SVG()), 0o644); err != nil {
		return err
	}
	fmt.Fprint(stdout, rep.Markdown())
	return nil
}

// buildScopegate builds ./cmd/scopegate of this module as `make build` does.
func buildScopegate(ctx context.Context, out string, stderr io.Writer) error {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./cmd/scopegate")
	cmd.Dir, cmd.Stdout, cmd.Stderr = root, stderr, stderr
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/scopegate: %w", err)
	}
	return nil
}
