// Package grpcstop stops a gRPC server gracefully within a deadline.
package grpcstop

import (
	"context"

	"google.golang.org/grpc"
)

// Graceful stops srv from accepting and waits for in-flight RPCs; when ctx ends first, it
// stops srv forcibly. It returns once srv has stopped.
func Graceful(ctx context.Context, srv *grpc.Server) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		srv.Stop()
		<-done
	}
}
