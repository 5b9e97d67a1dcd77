// Package xds is the control plane's fan-out benchmark (issue 26): N simulated Envoys,
// each on its own gRPC connection over loopback, hold a fleet's configuration over ADS
// (state-of-the-world or delta); one route is changed (the file rewritten, SIGHUP) and the
// server process's own CPU time (every thread, from /proc) and memory (RSS, and the peak
// during the change) are measured until every stream holds the new version and the server
// has read every ACK. Servers under test are separate processes, alternated round by round,
// so a scopegate binary built from an older commit can be compared with this one in the
// same session.
package xds

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/scopegate/scopegate/bench/hostinfo"
	"github.com/scopegate/scopegate/controlplane"
	"github.com/scopegate/scopegate/internal/logging"
)

// Main runs the command line: run (the default), xds (a control plane, as scopegate xds,
// for the harness to run as itself), floor (see floor.go) or sizes (encoded route
// configuration sizes).
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	sub := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("scopegate-xdsbench "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var err error
	switch sub {
	case "run":
		err = runCmd(ctx, fs, args, stdout, stderr)
	case "xds":
		err = serveCmd(ctx, fs, args, stderr)
	case "floor":
		listen := fs.String("listen", "127.0.0.1:0", "TCP address the clients connect to")
		admin := fs.String("admin", "127.0.0.1:0", "HTTP address answering /readyz")
		size := fs.Int("bytes", 0, "bytes written to every connection on SIGHUP")
		if err = fs.Parse(args); err == nil {
			err = serveFloor(ctx, *listen, *admin, *size)
		}
	case "sizes":
		routes := fs.String("routes", "1000,10000,50000", "comma-separated route counts")
		if err = fs.Parse(args); err == nil {
			err = sizes(*routes, stdout)
		}
	default:
		fmt.Fprintf(stderr, "scopegate-xdsbench: unknown subcommand %q (run, xds, floor, sizes)\n", sub)
		return 2
	}
	if err == flag.ErrHelp {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "scopegate-xdsbench:", err)
		return 1
	}
	return 0
}

// SmokeOptions is a few seconds' run that exercises every part and measures nothing worth
// reading.
func SmokeOptions() Options {
	return Options{Streams: []int{3, 6}, Modes: []string{"sotw", "delta"}, Routes: 20, Changes: 2, Rounds: 1, Timeout: time.Minute}
}

// FullOptions is the run docs/benchmarks.md reports.
func FullOptions() Options {
	return Options{Streams: []int{250, 500, 1000}, Modes: []string{"sotw", "delta"}, Routes: 1000, Changes: 5, Rounds: 2, Timeout: 2 * time.Minute}
}

func runCmd(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	var servers []string
	fs.Func("server", "NAME=PATH: a control plane to measure (a scopegate binary; PATH self: this harness); repeat to compare, the order alternates each round", func(v string) error {
		servers = append(servers, v)
		return nil
	})
	smoke := fs.Bool("smoke", false, "a few seconds: 3 and 6 streams, 20 routes, 2 changes, one round")
	streams := fs.String("streams", "", "comma-separated stream counts (default 250,500,1000)")
	modes := fs.String("modes", "", "comma-separated: sotw, delta (default both)")
	routes := fs.Int("routes", 0, "routes in the fleet (default 1000)")
	changes := fs.Int("changes", 0, "route changes per point (default 5)")
	rounds := fs.Int("rounds", 0, "rounds over every server (default 2)")
	out := fs.String("out", "", "write the report as JSON here")
	logs := fs.String("logs", "", "keep each server's log (stderr) in this directory")
	floor := fs.Bool("floor", true, "measure the floor too: the same bytes over plain TCP, no control plane (see docs/benchmarks.md)")
	profile := fs.String("cpuprofile", "", "for servers run as this harness (self): write CPU profiles of the changes to PREFIX-MODE-STREAMS-rROUND.pprof")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o := FullOptions()
	if *smoke {
		o = SmokeOptions()
	}
	if *streams != "" {
		o.Streams = nil
		for f := range strings.SplitSeq(*streams, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("-streams: %q", f)
			}
			o.Streams = append(o.Streams, n)
		}
	}
	if *modes != "" {
		o.Modes = nil
		for f := range strings.SplitSeq(*modes, ",") {
			if f != "sotw" && f != "delta" {
				return fmt.Errorf("-modes: %q is neither sotw nor delta", f)
			}
			o.Modes = append(o.Modes, f)
		}
	}
	if *routes > 0 {
		o.Routes = *routes
	}
	if *changes > 0 {
		o.Changes = *changes
	}
	if *rounds > 0 {
		o.Rounds = *rounds
	}
	if len(servers) == 0 {
		servers = []string{"self=self"}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, s := range servers {
		name, path, ok := strings.Cut(s, "=")
		if !ok || name == "" || path == "" {
			return fmt.Errorf("-server %q: want NAME=PATH", s)
		}
		srv := Server{Name: name, Cmd: []string{path}}
		if path == "self" {
			srv.Cmd = []string{self}
			if *profile != "" {
				srv.Profile = *profile + "-" + name
			}
		}
		o.Servers = append(o.Servers, srv)
	}
	if *floor {
		o.Servers = append(o.Servers, Server{Name: "floor", Cmd: []string{self}, Floor: true})
	}
	o.Progress, o.Logs = stderr, *logs
	o.Command = os.Getenv("XDSBENCH_COMMAND")
	if o.Command == "" {
		o.Command = strings.Join(append([]string{"scopegate-xdsbench"}, os.Args[1:]...), " ")
	}
	rep, err := Run(ctx, o)
	if err != nil {
		return err
	}
	rep.Markdown(stdout)
	if *out != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(*out, append(b, '\n'), 0o644)
	}
	return nil
}

// Run measures every point: for each round, mode and stream count, each server in turn
// (the order reversed every other round, so drift shows as spread, not as a difference).
func Run(ctx context.Context, o Options) (*Report, error) {
	if len(o.Servers) == 0 {
		return nil, fmt.Errorf("no server to measure")
	}
	t, err := translate1(o.Routes, 0)
	if err != nil {
		return nil, err
	}
	rep := &Report{Command: o.Command, Started: time.Now().UTC(), Routes: o.Routes, RouteConfigBytes: t.routeConfigBytes,
		Changes: o.Changes, Servers: o.Servers,
		Machine: hostinfo.Here()}
	for r := range o.Rounds {
		for _, mode := range o.Modes {
			for _, n := range o.Streams {
				for _, srv := range roundOrder(o.Servers, r) {
					if err := ctx.Err(); err != nil {
						return nil, err
					}
					p, err := measure(ctx, o, srv, mode, n, r)
					if err != nil {
						return nil, err
					}
					if o.Progress != nil {
						var cpu []time.Duration
						for _, c := range p.Changes {
							cpu = append(cpu, c.CPU)
						}
						fmt.Fprintf(o.Progress, "round %d %-5s %5d streams %-8s CPU per change %s ms (%s µs per stream), RSS %s→%s MB, load %s\n",
							r+1, mode, n, srv.Name, ms(mean(cpu)), us(mean(cpu)/time.Duration(n)), mb(p.IdleRSS), mb(p.SyncedRSS), hostinfo.LoadAvg())
					}
					rep.Points = append(rep.Points, p)
				}
			}
		}
	}
	rep.Finished = time.Now().UTC()
	rep.Machine.LoadAvgAfter = hostinfo.LoadAvg()
	rep.Summary = summarize(rep.Points)
	rep.Fits = fits(rep.Summary)
	return rep, nil
}

// roundOrder is the servers in the order round r measures them: reversed every other round.
func roundOrder(servers []Server, r int) []Server {
	order := slices.Clone(servers)
	if r%2 == 1 {
		slices.Reverse(order)
	}
	return order
}

// serveCmd runs the control plane the way scopegate xds does (reload on SIGHUP), so the
// harness can measure, and profile, the code it was built from.
func serveCmd(ctx context.Context, fs *flag.FlagSet, args []string, stderr io.Writer) error {
	cfgPath := fs.String("config", "", "control plane config file")
	listen := fs.String("listen", "", "gRPC ADS address")
	adminAddr := fs.String("admin", "", "admin HTTP address")
	logLevel := fs.String("log-level", "warn", "log level")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile here: from SIGUSR1 to exit; and the allocations since start to FILE.allocs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := logging.New(stderr, *logLevel)
	if err != nil {
		return err
	}
	// The registry scopegate xds serves: Go and process collectors included.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := controlplane.New(ctx, controlplane.Options{ConfigPath: *cfgPath, Logger: log, Registry: reg,
		Listen: *listen, Admin: *adminAddr})
	if err != nil {
		return err
	}
	reload, stopReload := controlplane.ReloadOnSIGHUP()
	defer stopReload()
	if *cpuprofile != "" {
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		defer signal.Stop(usr1)
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		go func() {
			<-usr1
			if err := pprof.StartCPUProfile(f); err != nil {
				log.Error("cpu profile", slog.Any("error", err))
			}
		}()
		defer pprof.StopCPUProfile()
		defer func() {
			if f, err := os.Create(*cpuprofile + ".allocs"); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	return svc.Run(ctx, reload, 10*time.Second)
}

func sizes(list string, w io.Writer) error {
	for f := range strings.SplitSeq(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-routes: %q", f)
		}
		t, err := translate1(n, 0)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%d routes: RouteConfiguration %d bytes encoded (%.1f MB, %.0f bytes per route)\n", n, t.routeConfigBytes, float64(t.routeConfigBytes)/1e6, float64(t.routeConfigBytes)/float64(n))
	}
	return nil
}
