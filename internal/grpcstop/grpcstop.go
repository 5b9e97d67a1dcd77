// Package grpcstop stops scopegate's gRPC servers the same way: long-lived streams (health
// Watch, ADS) are ended at once with UNAVAILABLE, the status a client reconnects on, and
// in-flight unary calls finish within a deadline.
package grpcstop

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Streams ends a server's streaming RPCs when Stop is called. GracefulStop alone waits for
// every open stream, and a health Watch or an ADS stream never ends by itself: one watcher
// would hold the process for the whole shutdown timeout.
type Streams struct {
	ctx  context.Context
	stop context.CancelFunc
}

// NewStreams returns a Streams; install its Interceptor on the server.
func NewStreams() *Streams {
	ctx, cancel := context.WithCancel(context.Background())
	return &Streams{ctx: ctx, stop: cancel}
}

// Interceptor gives each stream a context that also ends at Stop, and reports a stream that
// ended because of Stop with UNAVAILABLE (gRPC's "try again, elsewhere"), whatever the
// handler returned (the health service returns CANCELED, go-control-plane returns nil).
func (s *Streams) Interceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		unhook := context.AfterFunc(s.ctx, cancel)
		defer unhook()
		err := handler(srv, &stream{ServerStream: ss, ctx: ctx})
		if s.ctx.Err() != nil && ss.Context().Err() == nil {
			return status.Error(codes.Unavailable, "server shutting down: reconnect")
		}
		return err
	}
}

// Stop ends every open stream and any opened later.
func (s *Streams) Stop() { s.stop() }

type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }

// Graceful stops srv from accepting, ends its streams (streams may be nil) and waits for
// in-flight RPCs; when ctx ends first, it stops srv forcibly. It returns once srv has
// stopped.
func Graceful(ctx context.Context, srv *grpc.Server, streams *Streams) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	// After GracefulStop has closed the listeners: no stream opened in between is missed,
	// since Stop also ends streams opened later.
	if streams != nil {
		streams.Stop()
	}
	select {
	case <-done:
	case <-ctx.Done():
		srv.Stop()
		<-done
	}
}
