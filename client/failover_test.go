package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/corsd/corsd/client"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/server"
	"github.com/corsd/corsd/store/boltstore"
)

func TestIsLoopbackEndpoints(t *testing.T) {
	tests := []struct {
		name   string
		target string
		want   bool
	}{
		{name: "all loopback", target: "127.0.0.1:1,[::1]:2,localhost:3", want: true},
		{name: "one remote", target: "127.0.0.1:1,corsd.example.com:443", want: false},
		{name: "remote first", target: "10.0.0.1:1,127.0.0.1:2", want: false},
		{name: "malformed list", target: "127.0.0.1:1,,127.0.0.1:2", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := client.IsLoopback(tt.target); got != tt.want {
				t.Errorf("IsLoopback(%q) = %v, want %v", tt.target, got, tt.want)
			}
		})
	}
}

func TestDialEndpoints(t *testing.T) {
	many := make([]string, client.MaxEndpoints+1)
	for i := range many {
		many[i] = fmt.Sprintf("127.0.0.1:%d", 1000+i)
	}
	tests := []struct {
		name    string
		target  string
		opts    []client.DialOption
		wantErr string
	}{
		{name: "list", target: "127.0.0.1:1,127.0.0.1:2"},
		{name: "ipv6 in a list", target: "[::1]:1,127.0.0.1:2"},
		{name: "names with TLS", target: "corsd-1.example.com:443,corsd-2.example.com:443"},
		{name: "dns scheme is gRPC's", target: "dns:///corsd.example.com:443"},
		{name: "at most MaxEndpoints", target: strings.Join(many[:client.MaxEndpoints], ",")},
		{name: "too many", target: strings.Join(many, ","), wantErr: "at most"},
		{name: "empty entry", target: "127.0.0.1:1,", wantErr: "is empty"},
		{name: "no port", target: "127.0.0.1:1,127.0.0.1", wantErr: "not host:port"},
		{name: "no host", target: "127.0.0.1:1,:2", wantErr: "not host:port"},
		{name: "space", target: "127.0.0.1:1, 127.0.0.1:2", wantErr: "not host:port"},
		{name: "listed twice", target: "127.0.0.1:1,127.0.0.1:1", wantErr: "listed twice"},
		{name: "plaintext to a remote replica", target: "127.0.0.1:1,corsd.example.com:443", opts: []client.DialOption{client.WithInsecure()}, wantErr: "refusing plaintext"},
		{name: "token over plaintext to a remote replica", target: "127.0.0.1:1,corsd.example.com:443", opts: []client.DialOption{client.DangerouslyAllowPlaintext(), client.WithToken("t")}, wantErr: "refusing to send a token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.Dial(tt.target, tt.opts...)
			if c != nil {
				_ = c.Close()
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Dial(%q): %v", tt.target, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Dial(%q) error = %v, want one containing %q", tt.target, err, tt.wantErr)
			}
		})
	}
}

// replica is a real corsd (server package, its own bbolt file) on a fixed
// loopback port that counts the CheckOrigin calls it answers.
type replica struct {
	t      *testing.T
	addr   string
	db     string
	checks atomic.Int64

	srv *server.Server
	gs  *grpc.Server
	st  *boltstore.Store
}

func newReplica(t *testing.T) *replica {
	t.Helper()
	r := &replica{t: t, addr: "127.0.0.1:0", db: filepath.Join(t.TempDir(), "corsd.db")}
	r.start()
	t.Cleanup(func() { r.stop(true) })
	return r
}

func (r *replica) start() {
	t := r.t
	t.Helper()
	var (
		lis net.Listener
		err error
	)
	for i := 0; ; i++ { // the port was just released by stop
		if lis, err = net.Listen("tcp", r.addr); err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen %s: %v", r.addr, err)
	}
	r.addr = lis.Addr().String()
	if r.st, err = boltstore.Open(r.db); err != nil {
		t.Fatal(err)
	}
	if r.srv, err = server.New(r.st, server.WithLogger(slog.New(slog.DiscardHandler))); err != nil {
		t.Fatal(err)
	}
	count := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if info.FullMethod == corsdv1.DecisionService_CheckOrigin_FullMethodName {
			r.checks.Add(1)
		}
		return h(ctx, req)
	}
	r.gs = grpc.NewServer(append(r.srv.ServerOptions(), grpc.ChainUnaryInterceptor(count))...)
	r.srv.Register(r.gs)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := r.srv.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.gs.Serve(lis) }()
}

// stop ends the replica: gracefully (health NOT_SERVING first) or as a
// crash does (connections cut, calls in flight fail).
func (r *replica) stop(graceful bool) {
	if r.gs == nil {
		return
	}
	if graceful {
		r.srv.Shutdown()
		r.gs.GracefulStop()
	} else {
		r.gs.Stop()
	}
	_ = r.srv.Close()
	_ = r.st.Close()
	r.gs, r.srv, r.st = nil, nil, nil
}

// TestFailover: a client of three replicas spreads its calls over all of
// them, gives none to a replica that reports NOT_SERVING, loses no call
// when one crashes, and uses a replica again once it is back.
func TestFailover(t *testing.T) {
	rs := []*replica{newReplica(t), newReplica(t), newReplica(t)}
	var addrs []string
	for _, r := range rs {
		c, err := client.Dial(r.addr)
		if err != nil {
			t.Fatal(err)
		}
		createPolicy(t, c, "acme", "https://a.example.com")
		_ = c.Close()
		addrs = append(addrs, r.addr)
	}
	c, err := client.Dial(strings.Join(addrs, ","))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()

	// check makes n calls and returns how many failed.
	check := func(n int) (failed int) {
		for range n {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			d, err := c.CheckOrigin(ctx, &corsdv1.CheckOriginRequest{Policy: acme, Method: "GET", Origin: "https://a.example.com"})
			cancel()
			if err != nil || !d.GetAllowed() {
				failed++
				t.Logf("CheckOrigin: %v, %v", d, err)
			}
		}
		return failed
	}
	counts := func() []int64 {
		var n []int64
		for _, r := range rs {
			n = append(n, r.checks.Swap(0))
		}
		return n
	}
	// waitCalls makes calls until every replica in want has answered one
	// (the client connects to each in the background).
	waitCalls := func(want ...int) {
		t.Helper()
		seen := map[int]bool{}
		deadline := time.Now().Add(20 * time.Second)
		for len(seen) < len(want) {
			if time.Now().After(deadline) {
				t.Fatalf("replicas %v never answered; answered: %v", want, seen)
			}
			if f := check(1); f > 0 {
				t.Fatalf("a call failed while waiting for replicas %v", want)
			}
			for _, i := range want {
				if rs[i].checks.Load() > 0 {
					seen[i] = true
				}
			}
		}
		counts()
	}

	waitCalls(0, 1, 2)
	if f := check(30); f > 0 {
		t.Fatalf("%d of 30 calls failed with three replicas up", f)
	}
	if n := counts(); n[0] == 0 || n[1] == 0 || n[2] == 0 {
		t.Errorf("calls per replica = %v; want them spread over all three (round_robin)", n)
	}

	// Replica 0 starts a graceful shutdown: it reports NOT_SERVING but
	// still accepts calls until the health watch has told the client.
	rs[0].srv.Shutdown()
	time.Sleep(500 * time.Millisecond) // the health watch delivers NOT_SERVING
	if f := check(30); f > 0 {
		t.Errorf("%d of 30 calls failed while replica 0 reported NOT_SERVING", f)
	}
	if n := counts(); n[0] != 0 || n[1] == 0 || n[2] == 0 {
		t.Errorf("calls per replica = %v; want none to replica 0, which reports NOT_SERVING (client-side health checking)", n)
	}
	rs[0].stop(true)

	// Replica 1 crashes while calls flow: reads are retried on replica 2.
	done := make(chan int)
	go func() { done <- check(200) }()
	time.Sleep(20 * time.Millisecond)
	rs[1].stop(false)
	if f := <-done; f > 0 {
		t.Errorf("%d of 200 calls failed while replica 1 crashed; want 0 (retried on a replica that is up)", f)
	}
	counts()
	if f := check(10); f > 0 {
		t.Errorf("%d of 10 calls failed with replica 2 alone", f)
	}
	if n := counts(); n[2] != 10 {
		t.Errorf("calls per replica = %v; want all 10 on replica 2", n)
	}

	// Both come back on their ports and their data: calls reach them again.
	rs[0].start()
	rs[1].start()
	waitCalls(0, 1, 2)
}
