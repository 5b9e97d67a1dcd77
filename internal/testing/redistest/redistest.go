// Package redistest starts real Redis servers (Debian's redis-server) for tests: one on a
// free loopback port, or a three-master Redis Cluster. Each runs in a temporary directory
// with persistence off and is killed when the test ends. Where redis-server is missing the
// test is skipped, except when RequireEnv is set (CI sets it in .ci/run, after installing the
// package): there a missing server fails the test.
package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RequireEnv, set to 1, makes a missing redis-server a test failure instead of a skip.
const RequireEnv = "SCOPEGATE_REQUIRE_REDIS"

// startTimeout bounds waiting for a server to answer (generous: the machine may be loaded).
const startTimeout = 20 * time.Second

// Binary returns redis-server's path, or skips (fails under RequireEnv) when it is missing.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("redis-server not found and %s=1: install it (apt-get install -y redis-server)", RequireEnv)
		}
		t.Skip("redis-server not installed (apt-get install -y redis-server); set " + RequireEnv + "=1 to make this a failure")
	}
	return p
}

// Server is one running redis-server.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	Port int
	Sock string // the Unix socket path of a StartUnix server
	args []string
	cmd  *exec.Cmd
	exit chan struct{}
}

// Addr is host:port, or unix:///path for a StartUnix server.
func (s *Server) Addr() string {
	if s.Sock != "" {
		return "unix://" + s.Sock
	}
	return "127.0.0.1:" + strconv.Itoa(s.Port)
}

// StartUnix starts a server listening on a Unix socket in a temporary directory only.
func StartUnix(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), dir: t.TempDir()}
	s.Sock = filepath.Join(s.dir, "redis.sock")
	s.args = []string{"--port", "0", "--unixsocket", s.Sock, "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--daemonize", "no", "--loglevel", "warning", "--logfile", filepath.Join(s.dir, "redis.log")}
	if err := s.launch(); err != nil {
		t.Fatalf("redis-server did not start: %v", err)
	}
	t.Cleanup(s.Kill)
	return s
}

// Start starts a server on a free loopback port; extra are more redis-server arguments.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin := Binary(t)
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	for attempt := 0; ; attempt++ {
		s.Port = freePort(t, false)
		s.args = append([]string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", s.dir, "--daemonize", "no", "--loglevel", "warning", "--logfile", filepath.Join(s.dir, "redis.log")}, extra...)
		if err := s.launch(); err == nil {
			break
		} else if attempt == 4 {
			t.Fatalf("redis-server did not start: %v", err)
		}
	}
	t.Cleanup(s.Kill)
	return s
}

func (s *Server) launch() error {
	s.cmd = exec.Command(s.bin, s.args...)
	s.cmd.Dir = s.dir
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.exit = make(chan struct{})
	go func(cmd *exec.Cmd, exit chan struct{}) { _ = cmd.Wait(); close(exit) }(s.cmd, s.exit)
	deadline := time.Now().Add(startTimeout)
	for {
		if _, err := s.Do("PING"); err == nil || strings.HasPrefix(err.Error(), "redis: ") { // NOAUTH: up, with a password
			return nil
		}
		select {
		case <-s.exit:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			return fmt.Errorf("redis-server on port %d exited: %s", s.Port, log)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redis-server on port %d did not answer PING within %s", s.Port, startTimeout)
		}
	}
}

// Kill stops the server at once (SIGKILL) and waits for it to be gone.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exit:
	default:
		_ = s.cmd.Process.Kill()
		<-s.exit
	}
}

// Restart starts the server again on the same port (empty: persistence is off).
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	var err error
	for attempt := 0; attempt < 50; attempt++ { // the port may linger for a moment
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("restart: %v", err)
}

// Do sends one command over a fresh connection and returns the reply as text (RESP2 inline
// parsing: status, error, integer, bulk; arrays are joined with newlines).
func (s *Server) Do(args ...string) (string, error) { return Do(s.Addr(), args...) }

// Do sends one command to addr (host:port or unix:///path).
func Do(addr string, args ...string) (string, error) {
	network := "tcp"
	if p, ok := strings.CutPrefix(addr, "unix://"); ok {
		network, addr = "unix", p
	}
	c, err := net.DialTimeout(network, addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(c))
}

func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, _ := strconv.Atoi(line[1:])
		var parts []string
		for range n {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// Keys returns every key of the server (KEYS *: tests only).
func (s *Server) Keys() []string {
	s.t.Helper()
	out, err := s.Do("KEYS", "*")
	if err != nil {
		s.t.Fatalf("KEYS: %v", err)
	}
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// Cluster is a Redis Cluster of three masters on loopback.
type Cluster struct {
	Nodes []*Server
}

// Addrs are the nodes' host:port.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, n := range c.Nodes {
		a = append(a, n.Addr())
	}
	return a
}

// Keys returns every key of every node, by node.
func (c *Cluster) Keys() [][]string {
	var all [][]string
	for _, n := range c.Nodes {
		all = append(all, n.Keys())
	}
	return all
}

// StartCluster starts three cluster-enabled servers and joins them with
// redis-cli --cluster create (three masters, no replicas), waiting for cluster_state:ok.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	Binary(t)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli not found (it comes with redis-server): %v", err)
	}
	c := &Cluster{}
	for range 3 {
		n := startClusterNode(t)
		c.Nodes = append(c.Nodes, n)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(startTimeout)
	for _, n := range c.Nodes {
		for {
			info, err := n.Do("CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ok within %s: %v %s", n.Addr(), startTimeout, err, info)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return c
}

// startClusterNode starts one node on a port whose cluster bus port (+10000) is free too.
func startClusterNode(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	for attempt := 0; ; attempt++ {
		s.Port = freePort(t, true)
		s.args = []string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", s.dir, "--daemonize", "no", "--loglevel", "warning", "--logfile", filepath.Join(s.dir, "redis.log"),
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(s.dir, "nodes.conf"), "--cluster-node-timeout", "5000"}
		if err := s.launch(); err == nil {
			break
		} else if attempt == 4 {
			t.Fatalf("cluster node did not start: %v", err)
		}
	}
	t.Cleanup(s.Kill)
	return s
}

// freePort finds a free loopback port (below 55536 with its +10000 bus port free too when
// bus is set). Another process may take it before the server binds: callers retry.
func freePort(t testing.TB, bus bool) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !bus {
			return p
		}
		if p+10000 > 65535 {
			continue
		}
		if l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000)); err == nil {
			l2.Close()
			return p
		}
	}
	t.Fatal("no free port pair for a cluster node")
	return 0
}
