// Package etcdtest runs a real etcd member in-process, on loopback ports,
// with its data in a test's temporary directory: for the tests of the etcd
// store and of corsd replicas.
package etcdtest

import (
	"net"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// MaxRequestBytes is the members' --max-request-bytes: large enough for
// corsd's biggest write (a large policy written twice, as policy and
// change).
const MaxRequestBytes = 16 << 20

// Server is a running etcd member.
type Server struct {
	// Endpoint is its client URL, http://127.0.0.1:PORT.
	Endpoint string

	mu sync.Mutex
	e  *embed.Etcd
}

// freeURL returns a loopback URL on a port that was free a moment ago.
func freeURL(t testing.TB) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return url.URL{Scheme: "http", Host: addr}
}

// Option configures Start.
type Option func(*embed.Config)

// Durable keeps etcd's fsync on every commit, as in production: for
// benchmarks that compare write latency with bbolt's (which fsyncs).
func Durable() Option { return func(c *embed.Config) { c.UnsafeNoFsync = false } }

// Start starts a one-member etcd; the test's cleanup stops it. Unless
// Durable is given, fsync is off: the tests write thousands of times, and
// durability is etcd's own business, not what they check.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var lastErr error
	for range 3 { // a port taken between freeURL and the listen: try again
		cfg := embed.NewConfig()
		cfg.Name = "corsd-test"
		cfg.Dir = filepath.Join(t.TempDir(), "etcd")
		client, peer := freeURL(t), freeURL(t)
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.MaxRequestBytes = MaxRequestBytes
		cfg.UnsafeNoFsync = true
		for _, o := range opts {
			o(cfg)
		}
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			lastErr = err
			continue
		}
		select {
		case <-e.Server.ReadyNotify():
		case <-time.After(30 * time.Second):
			e.Close()
			t.Fatal("etcdtest: etcd not ready within 30s")
		}
		s := &Server{Endpoint: client.String(), e: e}
		t.Cleanup(s.Stop)
		return s
	}
	t.Fatalf("etcdtest: start etcd: %v", lastErr)
	return nil
}

// Stop stops the member (its port then refuses connections). A second
// call does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
}

// HostPort is the member's client address without the scheme.
func (s *Server) HostPort() string {
	u, _ := url.Parse(s.Endpoint)
	return u.Host
}
