package load

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime/metrics"
	"runtime/pprof"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/scopegate/scopegate/extauthz/config"
	"github.com/scopegate/scopegate/extauthz/server"
	"github.com/scopegate/scopegate/internal/logging"
)

// serverOptions are scopegate's gRPC server options (extauthz/server), so the floor differs
// from scopegate only in the work a Check does.
func serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
}

type floorService struct {
	authv3.UnimplementedAuthorizationServer
}

var okResponse = &authv3.CheckResponse{Status: &rpcstatus.Status{Code: 0}}

func (floorService) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return okResponse, nil
}

// ServeFloor runs the floor: an ext_authz server that answers OK at once, with gRPC health
// SERVING, until ctx ends.
func ServeFloor(ctx context.Context, listen string) error {
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	s := grpc.NewServer(serverOptions()...)
	authv3.RegisterAuthorizationServer(s, floorService{})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	hs.Shutdown()
	s.GracefulStop()
	return nil
}

// ServeAuthz runs scopegate authz in this process exactly as `scopegate authz --config` does
// (server.New on the same config), for the CPU profile (scopegate has no pprof endpoint) and
// the smoke test. With cpuProfile set, profiling starts on SIGUSR1 (after the harness's
// warm-up) and the profile is written when ctx ends.
func ServeAuthz(ctx context.Context, cfgPath, cpuProfile string) error {
	return serveAuthz(ctx, cfgPath, cpuProfile, "")
}

// serveAuthz is ServeAuthz; with stats set, it also writes the runtime's view of the
// profiled stretch there (RuntimeStats, JSON).
func serveAuthz(ctx context.Context, cfgPath, cpuProfile, stats string) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	srv.Start()
	var prof *os.File
	var rt0 []metrics.Sample
	if cpuProfile != "" {
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		defer signal.Stop(usr1)
		select {
		case <-usr1:
			if prof, err = os.Create(cpuProfile); err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(prof); err != nil {
				return err
			}
			rt0 = readRuntime()
		case <-ctx.Done():
		}
	}
	<-ctx.Done()
	if prof != nil {
		if stats != "" {
			if err := writeRuntimeStats(stats, runtimeSince(rt0, readRuntime())); err != nil {
				return err
			}
		}
		pprof.StopCPUProfile()
		if err := prof.Close(); err != nil {
			return err
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	return srv.Shutdown(sctx)
}

// Launcher is how the harness starts a server under test as a separate process: the argv and
// extra environment for a server listening on addr (whose config, for scopegate, is cfgPath).
type Launcher func(addr, cfgPath string) (argv, env []string)

// child is a running server under test.
type child struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
	err  error
	log  string
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// startChild starts a server process and returns once its gRPC health says SERVING for the
// Authorization service (or it exited, or timeout passed). A port taken between picking and
// binding is retried with a fresh one, a bounded number of times. cpu ≥ 0 pins the process
// to that CPU, with GOMAXPROCS=1, before any load.
func startChild(ctx context.Context, launch Launcher, writeConfig func(addr string) (string, error), logPath string, timeout time.Duration, cpu int) (*child, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		cfgPath := ""
		if writeConfig != nil {
			if cfgPath, err = writeConfig(addr); err != nil {
				return nil, err
			}
		}
		argv, env := launch(addr, cfgPath)
		logf, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), env...)
		if cpu >= 0 {
			cmd.Env = append(cmd.Env, "GOMAXPROCS=1")
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			return nil, err
		}
		c := &child{cmd: cmd, addr: addr, done: make(chan struct{}), log: logPath}
		go func() {
			c.err = cmd.Wait()
			logf.Close()
			close(c.done)
		}()
		if cpu >= 0 {
			if err := pinProcess(cmd.Process.Pid, cpu); err != nil {
				c.stop(5 * time.Second)
				return nil, fmt.Errorf("%s: %w", argv[0], err)
			}
		}
		if err := waitServing(ctx, addr, c.done, timeout); err != nil {
			c.stop(5 * time.Second)
			lastErr = fmt.Errorf("%s: %w (log: %s)", argv[0], err, tail(logPath))
			continue
		}
		return c, nil
	}
	return nil, lastErr
}

func tail(path string) string {
	raw, _ := os.ReadFile(path)
	if len(raw) > 2000 {
		raw = raw[len(raw)-2000:]
	}
	return string(raw)
}

// waitServing watches gRPC health until the Authorization service is SERVING.
func waitServing(ctx context.Context, addr string, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := healthpb.NewHealthClient(conn).Watch(ctx,
		&healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName}, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			select {
			case <-exited:
				return errors.New("server exited before SERVING")
			default:
			}
			return fmt.Errorf("health watch: %w", err)
		}
		if resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// signal sends sig to the child.
func (c *child) signal(sig os.Signal) error { return c.cmd.Process.Signal(sig) }

// stop sends SIGTERM and waits up to grace, then kills.
func (c *child) stop(grace time.Duration) error {
	select {
	case <-c.done:
		return c.err
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		return c.err
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.done
		return errors.New("killed after shutdown grace")
	}
}
