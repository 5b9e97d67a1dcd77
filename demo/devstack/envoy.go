package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// Envoy is Envoy running as a child process.
type Envoy struct {
	*Service
	// AdminAddr is the admin address from the bootstrap; Fleet is its node.cluster.
	AdminAddr, Fleet string
}

// bootstrapInfo is what devstack needs from an Envoy bootstrap file.
type bootstrapInfo struct {
	Node struct {
		Cluster string `yaml:"cluster"`
	} `yaml:"node"`
	Admin struct {
		Address struct {
			SocketAddress struct {
				Address   string `yaml:"address"`
				PortValue int    `yaml:"port_value"`
			} `yaml:"socket_address"`
		} `yaml:"address"`
	} `yaml:"admin"`
}

func readBootstrap(path string) (*bootstrapInfo, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	var b bootstrapInfo
	if err := yaml.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("envoy bootstrap %s: %w", path, err)
	}
	return &b, nil
}

// StartEnvoy runs `envoy -c bootstrap --log-level warn` until ctx ends, then stops it with
// SIGTERM (killing it if it has not exited 10 s later). Its output goes to stderr.
func StartEnvoy(ctx context.Context, binary, bootstrap string, stderr io.Writer) (*Envoy, error) {
	b, err := readBootstrap(bootstrap)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, binary, "-c", bootstrap, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = shutdownTimeout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("envoy: %w", err)
	}
	e := &Envoy{Service: newService("envoy"), Fleet: b.Node.Cluster}
	if sa := b.Admin.Address.SocketAddress; sa.PortValue != 0 {
		e.AdminAddr = net.JoinHostPort(sa.Address, strconv.Itoa(sa.PortValue))
	}
	go func() {
		err := cmd.Wait()
		if ctx.Err() != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) || errors.Is(err, context.Canceled) {
				err = nil // stopped by us: whatever status SIGTERM left is a clean stop
			}
		}
		e.finish(err)
	}()
	return e, nil
}

// WaitReady polls Envoy's admin /ready until it answers 200 (Envoy has its listeners from the
// control plane), Envoy exits, or ctx ends.
func (e *Envoy) WaitReady(ctx context.Context) error {
	if e.AdminAddr == "" {
		return errors.New("envoy: the bootstrap has no admin address to check readiness on")
	}
	return pollReady(ctx, "http://"+dialable(e.AdminAddr)+"/ready", e.Done())
}

// pollReady GETs url every 100 ms until it answers 200, stopped is closed, or ctx ends. It is for
// processes that offer no readiness signal but an HTTP endpoint.
func pollReady(ctx context.Context, url string, stopped <-chan struct{}) error {
	hc := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last: %v)", ctx.Err(), last)
		case <-stopped:
			return fmt.Errorf("exited before it was ready (last: %v)", last)
		case <-tick.C:
		}
	}
}
