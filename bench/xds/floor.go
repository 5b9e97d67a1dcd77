package xds

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// The floor is what the kernel alone charges for a change: a process that holds N loopback
// TCP connections and, on SIGHUP, writes the route configuration's size to each (from one
// goroutine per connection, as gRPC's writers are), then reads a small answer from each.
// No gRPC, no HTTP/2, no protobuf: the cost of a change that no control plane can go below
// on this machine, measured the same way and in the same session as the servers.

// floorAnswer is the size of a client's answer, about an ACK's (a DiscoveryRequest for
// route configurations in its HTTP/2 frame).
const floorAnswer = 160

// serveFloor runs the floor server until ctx ends.
func serveFloor(ctx context.Context, listen, admin string, size int) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	aln, err := net.Listen("tcp", admin)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }),
		ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(aln) }()
	defer hs.Close()

	payload := make([]byte, size)
	binary.BigEndian.PutUint32(payload, uint32(size))
	var (
		mu      sync.Mutex
		writers []chan struct{}
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			kick := make(chan struct{}, 1)
			mu.Lock()
			writers = append(writers, kick)
			mu.Unlock()
			go func() { _, _ = io.Copy(io.Discard, c) }()
			go func() {
				defer c.Close()
				for {
					select {
					case <-kick:
						if _, err := c.Write(payload); err != nil {
							return
						}
					case <-ctx.Done():
						return
					}
				}
			}()
		}
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			mu.Lock()
			for _, k := range writers {
				select {
				case k <- struct{}{}:
				default:
				}
			}
			mu.Unlock()
		}
	}
}

// floorClients holds n connections to a floor server, each reading size bytes per change
// and answering.
type floorClients struct {
	conns    []net.Conn
	mu       sync.Mutex
	received []int // changes received, per connection
	changed  chan struct{}
	err      error
}

func dialFloor(addr string, n, size int) (*floorClients, error) {
	fc := &floorClients{received: make([]int, n), changed: make(chan struct{})}
	answer := make([]byte, floorAnswer)
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fc.close()
			return nil, err
		}
		fc.conns = append(fc.conns, c)
		go func() {
			buf := make([]byte, size)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					fc.fail(err)
					return
				}
				if _, err := c.Write(answer); err != nil {
					fc.fail(err)
					return
				}
				fc.mu.Lock()
				fc.received[i]++
				close(fc.changed)
				fc.changed = make(chan struct{})
				fc.mu.Unlock()
			}
		}()
	}
	return fc, nil
}

func (fc *floorClients) fail(err error) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.err == nil && !errors.Is(err, net.ErrClosed) {
		fc.err = err
	}
	close(fc.changed)
	fc.changed = make(chan struct{})
}

// waitChange blocks until every connection has received k changes.
func (fc *floorClients) waitChange(k int, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		fc.mu.Lock()
		ch, err, done := fc.changed, fc.err, true
		for _, r := range fc.received {
			if r < k {
				done = false
				break
			}
		}
		fc.mu.Unlock()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-deadline:
			return fmt.Errorf("floor: connections did not receive change %d", k)
		}
	}
}

func (fc *floorClients) close() {
	for _, c := range fc.conns {
		c.Close()
	}
}
