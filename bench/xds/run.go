package xds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scopegate/scopegate/internal/testing/envoysim"
)

// envoyWindow is Envoy's default HTTP/2 stream and connection window (256 MiB): the
// simulated Envoys get the same, or flow control would be what is measured.
const envoyWindow = 256 << 20

// Server is a control plane under test: a command that takes scopegate xds's flags after
// the word "xds" (a scopegate binary, or this harness).
type Server struct {
	Name string   `json:"name"`
	Cmd  []string `json:"cmd"`
	Env  []string `json:"-"`
	// Profile, for a server that is this harness, is where to write its CPU profile of the
	// changes (profiling starts with the first change, stops at exit).
	Profile string `json:"-"`
	// Floor marks the floor (see floor.go): Cmd is this harness, run as "floor".
	Floor bool `json:"floor,omitempty"`
}

// Options of a run.
type Options struct {
	Servers []Server
	Streams []int
	Modes   []string // "sotw", "delta"
	Routes  int
	Changes int // per point
	Rounds  int
	// Timeout bounds each wait: the streams reaching a version, the server becoming ready.
	Timeout time.Duration
	// Logs, when set, keeps each server's log there (NAME-MODE-STREAMS-rROUND.log).
	Logs     string
	Progress io.Writer
	Command  string
}

// measure runs one point: a server process, n streams of one mode, o.Changes changes.
func measure(ctx context.Context, o Options, srv Server, mode string, n, round int) (Point, error) {
	p := Point{Server: srv.Name, Mode: mode, Streams: n, Round: round}
	dir, err := os.MkdirTemp("", "scopegate-xdsbench-")
	if err != nil {
		return p, err
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "xds.yaml")
	if err := os.WriteFile(cfgPath, []byte(benchConfig(o.Routes, 0)), 0o600); err != nil {
		return p, err
	}
	listen, err := freeAddr()
	if err != nil {
		return p, err
	}
	admin, err := freeAddr()
	if err != nil {
		return p, err
	}
	t0, err := translate1(o.Routes, 0)
	if err != nil {
		return p, err
	}
	args := append(append([]string{}, srv.Cmd[1:]...), "xds", "--config", cfgPath, "--listen", listen, "--admin", admin, "--log-level", "warn")
	if srv.Floor {
		args = append(append([]string{}, srv.Cmd[1:]...), "floor", "--listen", listen, "--admin", admin, "--bytes", fmt.Sprint(t0.routeConfigBytes))
	}
	if srv.Profile != "" {
		args = append(args, "--cpuprofile", fmt.Sprintf("%s-%s-%d-r%d.pprof", srv.Profile, mode, n, round))
	}
	cmd := exec.Command(srv.Cmd[0], args...)
	cmd.Env = append(os.Environ(), srv.Env...)
	logPath := filepath.Join(dir, "server.log")
	if o.Logs != "" {
		logPath = filepath.Join(o.Logs, fmt.Sprintf("%s-%s-%d-r%d.log", srv.Name, mode, n, round))
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return p, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return p, fmt.Errorf("%s: %w", srv.Name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(o.Timeout):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	pid := cmd.Process.Pid
	fail := func(err error) (Point, error) {
		log, _ := os.ReadFile(logf.Name())
		return p, fmt.Errorf("%s %s streams=%d: %w\nserver log:\n%s", srv.Name, mode, n, err, tail(log, 2000))
	}
	if err := waitReady(ctx, admin, exited, o.Timeout); err != nil {
		return fail(err)
	}
	if p.IdleRSS, _, err = memStatus(pid); err != nil {
		return fail(err)
	}

	cpu0, err := procCPU(pid)
	if err != nil {
		return fail(err)
	}
	var fleet fleetClients
	if srv.Floor {
		fleet, err = dialFloor(listen, n, t0.routeConfigBytes)
	} else {
		fleet, err = connect(ctx, listen, mode, n)
	}
	if err != nil {
		return fail(err)
	}
	defer fleet.close()
	if err := fleet.wait(ctx, 0, t0.routeVersion, o.Timeout); err != nil {
		return fail(err)
	}
	cpu1, _, err := settle(ctx, pid, admin, srv.Floor, n, t0.routeVersion, o.Timeout)
	if err != nil {
		return fail(err)
	}
	p.ConnectCPU = cpu1 - cpu0
	if p.SyncedRSS, _, err = memStatus(pid); err != nil {
		return fail(err)
	}

	for k := 1; k <= o.Changes; k++ {
		if err := os.WriteFile(cfgPath, []byte(benchConfig(o.Routes, k)), 0o600); err != nil {
			return p, err
		}
		want, err := translate1(o.Routes, k)
		if err != nil {
			return fail(err)
		}
		if err := resetPeak(pid); err != nil {
			return fail(err)
		}
		var c Change
		if c.RSSBefore, _, err = memStatus(pid); err != nil {
			return fail(err)
		}
		if k == 1 && srv.Profile != "" {
			_ = cmd.Process.Signal(syscall.SIGUSR1)
		}
		alloc0, err := allocated(ctx, admin)
		if err != nil {
			return fail(err)
		}
		before, err := procCPU(pid)
		if err != nil {
			return fail(err)
		}
		start := time.Now()
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			return fail(err)
		}
		if err := fleet.wait(ctx, k, want.routeVersion, o.Timeout); err != nil {
			return fail(fmt.Errorf("change %d: %w", k, err))
		}
		c.ToAll = time.Since(start)
		after, alloc1, err := settle(ctx, pid, admin, srv.Floor, n, want.routeVersion, o.Timeout)
		if err != nil {
			return fail(err)
		}
		c.CPU = after - before
		if _, c.Peak, err = memStatus(pid); err != nil {
			return fail(err)
		}
		c.Allocated = alloc1 - alloc0
		p.Changes = append(p.Changes, c)
	}
	if err := fleet.failed(); err != nil {
		return fail(fmt.Errorf("a stream ended during the run: %w", err))
	}
	return p, nil
}

// fleetClients are the simulated Envoys of a point.
type fleetClients interface {
	// wait blocks until every client holds change k (route version routeVersion).
	wait(ctx context.Context, k int, routeVersion string, timeout time.Duration) error
	// failed is why a client's stream ended, if one did.
	failed() error
	close()
}

// envoys are envoysim clients, each on its own connection.
type envoys struct {
	clients []*envoysim.Client
	conns   []*grpc.ClientConn
}

func (e *envoys) wait(ctx context.Context, _ int, v string, timeout time.Duration) error {
	return waitRoutes(ctx, e.clients, v, timeout)
}

func (e *envoys) failed() error {
	for _, c := range e.clients {
		if err := c.Err(); err != nil {
			return err
		}
	}
	return nil
}

func (e *envoys) close() {
	for _, c := range e.clients {
		if c != nil {
			c.Close()
		}
	}
	for _, c := range e.conns {
		c.Close()
	}
}

func (fc *floorClients) wait(_ context.Context, k int, _ string, timeout time.Duration) error {
	return fc.waitChange(k, timeout)
}

func (fc *floorClients) failed() error {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.err
}

// connect opens n simulated Envoys, each on its own connection as real Envoys are.
func connect(ctx context.Context, addr, mode string, n int) (*envoys, error) {
	var (
		mu    sync.Mutex
		e     = &envoys{clients: make([]*envoysim.Client, n)}
		first error
	)
	dial := envoysim.SotW
	if mode == "delta" {
		dial = envoysim.Delta
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
					grpc.WithInitialWindowSize(envoyWindow), grpc.WithInitialConnWindowSize(envoyWindow))
				if err == nil {
					mu.Lock()
					e.conns = append(e.conns, conn)
					mu.Unlock()
					node := &core.Node{Id: fmt.Sprintf("envoy-%05d", i), Cluster: fleetName}
					e.clients[i], err = dial(ctx, conn, node, envoysim.Options{})
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if first != nil {
		e.close()
		return nil, first
	}
	return e, nil
}

// waitRoutes waits until every stream holds route version v.
func waitRoutes(ctx context.Context, clients []*envoysim.Client, v string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, c := range clients {
		if err := c.Wait(ctx, func(c *envoysim.Client) bool { return c.Version(resource.RouteType) == v }); err != nil {
			return fmt.Errorf("streams did not reach route version %s: %w", v, err)
		}
	}
	return nil
}

// quiesce waits until the server has gone 100 ms using less than 1 ms of CPU and waiting
// less than 1 ms for one: it has read every ACK and finished with the change (on a loaded
// machine a server starved of CPU would otherwise look idle).
func quiesce(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	cpu0, wait0, err := schedstat(pid)
	if err != nil {
		return err
	}
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		cpu, wait, err := schedstat(pid)
		if err != nil {
			return err
		}
		if cpu-cpu0 < time.Millisecond && wait-wait0 < time.Millisecond {
			return nil
		}
		cpu0, wait0 = cpu, wait
	}
	return errors.New("the server did not go idle")
}

// settle waits until the server has finished with a change and returns its CPU time and
// heap bytes allocated then: it is idle (quiesce), and its /status shows every stream's
// ACK of routeVersion read (on a loaded machine ACKs can trickle in after an idle moment).
// Both are read before /status is asked, so the answer's own cost is not counted.
func settle(ctx context.Context, pid int, admin string, floor bool, n int, routeVersion string, timeout time.Duration) (cpu time.Duration, alloc int64, err error) {
	deadline := time.Now().Add(timeout)
	for {
		if err := quiesce(pid, timeout); err != nil {
			return 0, 0, err
		}
		if cpu, err = procCPU(pid); err != nil {
			return 0, 0, err
		}
		if alloc, err = allocated(ctx, admin); err != nil || floor {
			return cpu, alloc, err
		}
		acked, err := ackedRoutes(ctx, admin, routeVersion)
		if err != nil {
			return 0, 0, err
		}
		if acked >= n {
			return cpu, alloc, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("/status: %d of %d streams acknowledged routes %s", acked, n, routeVersion)
		}
	}
}

// ackedRoutes counts the streams whose acknowledged route version in /status is v.
func ackedRoutes(ctx context.Context, admin, v string) (int, error) {
	body, err := getAdmin(ctx, admin, "/status")
	if err != nil {
		return 0, err
	}
	var st struct {
		Nodes []struct {
			Types map[string]struct {
				Acked string `json:"acked"`
			} `json:"types"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return 0, fmt.Errorf("/status: %w", err)
	}
	n := 0
	for _, node := range st.Nodes {
		if node.Types["routes"].Acked == v {
			n++
		}
	}
	return n, nil
}

// waitReady polls the admin port's /readyz (the process is another program: there is no
// signal to wait on but its answer).
func waitReady(ctx context.Context, admin string, exited <-chan error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("server exited before it was ready: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not ready at %s after %s: %v", admin, timeout, err)
		}
	}
}

// allocated is the server's go_memstats_alloc_bytes_total from its admin /metrics (every
// scopegate xds exposes the Go collector), 0 for a server without it (the floor).
func allocated(ctx context.Context, admin string) (int64, error) {
	body, err := getAdmin(ctx, admin, "/metrics")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "go_memstats_alloc_bytes_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("/metrics: go_memstats_alloc_bytes_total %q", v)
			}
			return int64(f), nil
		}
	}
	return 0, nil
}

// getAdmin reads one of the server's admin endpoints.
func getAdmin(ctx context.Context, admin, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", path, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
