package client_test

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/corsd/corsd/client"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/server"
	"github.com/corsd/corsd/store/boltstore"
)

// corsd is a real corsd (server package, bbolt store in a temp dir) on a
// loopback port that a test can stop and start again on the same port and
// database, as a restarted daemon would be.
type corsd struct {
	t         *testing.T
	db        string
	addr      string
	storeOpts []boltstore.Option
	srvOpts   []server.Option

	mu     sync.Mutex
	starts []int64 // start_revision of every WatchPolicies call, in order

	st  *boltstore.Store
	srv *server.Server
	gs  *grpc.Server
}

func newCorsd(t *testing.T, storeOpts ...boltstore.Option) *corsd {
	t.Helper()
	return newCorsdWith(t, nil, storeOpts...)
}

func newCorsdWith(t *testing.T, srvOpts []server.Option, storeOpts ...boltstore.Option) *corsd {
	t.Helper()
	c := &corsd{t: t, db: filepath.Join(t.TempDir(), "corsd.db"), storeOpts: storeOpts, srvOpts: srvOpts}
	c.start()
	t.Cleanup(c.stop)
	return c
}

// start serves on c.addr (a fresh port the first time).
func (c *corsd) start() {
	t := c.t
	t.Helper()
	addr := c.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lis net.Listener
	var err error
	// The port was just released by stop; retry briefly in case the kernel
	// still holds it.
	for i := 0; ; i++ {
		if lis, err = net.Listen("tcp", addr); err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	c.addr = lis.Addr().String()
	st, err := boltstore.Open(c.db, c.storeOpts...)
	if err != nil {
		t.Fatalf("boltstore.Open: %v", err)
	}
	srvOpts := append([]server.Option{server.WithLogger(slog.New(slog.DiscardHandler)), server.WithProgressInterval(50 * time.Millisecond)}, c.srvOpts...)
	srv, err := server.New(st, srvOpts...)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	opts := append(srv.ServerOptions(), grpc.ChainStreamInterceptor(c.recordWatch))
	gs := grpc.NewServer(opts...)
	srv.Register(gs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.WaitReady(ctx); err != nil {
		t.Fatalf("corsd not ready: %v", err)
	}
	go func() { _ = gs.Serve(lis) }()
	c.st, c.srv, c.gs = st, srv, gs
}

// stop shuts corsd down gracefully and closes its store.
func (c *corsd) stop() {
	if c.gs == nil {
		return
	}
	c.srv.Shutdown()
	c.gs.Stop()
	_ = c.srv.Close()
	_ = c.st.Close()
	c.st, c.srv, c.gs = nil, nil, nil
}

// recordWatch records the start revision of each WatchPolicies call.
func (c *corsd) recordWatch(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != corsdv1.DecisionService_WatchPolicies_FullMethodName {
		return handler(srv, ss)
	}
	return handler(srv, &recordingStream{ServerStream: ss, c: c})
}

type recordingStream struct {
	grpc.ServerStream
	c *corsd
}

func (s *recordingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if req, ok := m.(*corsdv1.WatchPoliciesRequest); ok && err == nil {
		s.c.mu.Lock()
		s.c.starts = append(s.c.starts, req.GetStartRevision())
		s.c.mu.Unlock()
	}
	return err
}

func (c *corsd) watchStarts() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int64(nil), c.starts...)
}

// client returns a Client of c, closed with the test.
func (c *corsd) client() *client.Client {
	c.t.Helper()
	cl, err := client.Dial(c.addr)
	if err != nil {
		c.t.Fatalf("client.Dial(%s): %v", c.addr, err)
	}
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}
