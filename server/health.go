package server

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthWatchDrain bounds how long a health Watch stays open after Shutdown
// when no NOT_SERVING update is due to it (a watch of an unknown service).
const healthWatchDrain = 500 * time.Millisecond

// healthService is grpc's health server with one change: Watch streams end
// once the client has been told NOT_SERVING at shutdown. Otherwise every
// open watch (grpc-go clients with health checking keep one per
// connection) holds GracefulStop until the shutdown timeout.
type healthService struct {
	*health.Server
	s *Server
}

func (h healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-h.s.shutdown:
			t := time.NewTimer(healthWatchDrain)
			defer t.Stop()
			select {
			case <-t.C:
				cancel()
			case <-ctx.Done():
			}
		case <-ctx.Done():
		}
	}()
	err := h.Server.Watch(req, &shutdownWatch{Health_WatchServer: stream, ctx: ctx, cancel: cancel, s: h.s})
	if h.s.shutting.Load() && stream.Context().Err() == nil {
		return status.Error(codes.Unavailable, "corsd is shutting down")
	}
	return err
}

// shutdownWatch ends its stream right after it delivered NOT_SERVING
// during a shutdown.
type shutdownWatch struct {
	healthpb.Health_WatchServer
	ctx    context.Context
	cancel context.CancelFunc
	s      *Server
}

func (w *shutdownWatch) Context() context.Context { return w.ctx }

func (w *shutdownWatch) Send(resp *healthpb.HealthCheckResponse) error {
	err := w.Health_WatchServer.Send(resp)
	if w.s.shutting.Load() && resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
		w.cancel()
	}
	return err
}
