package corsdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdNodePackage is the package of the program that runs one etcd member
// (etcd's own server code, at the version of corsd's etcd client).
const EtcdNodePackage = "./internal/etcdnode"

// EtcdCluster is an etcd cluster on loopback whose members are separate
// processes of the etcdnode program, so that a test can SIGKILL one. Its
// methods are safe for concurrent use.
type EtcdCluster struct {
	// Members are the cluster's members, in the order of their names
	// (m0, m1, ...).
	Members []*EtcdMember
}

// EtcdMember is one member of an EtcdCluster.
type EtcdMember struct {
	// Name is the member's name in the cluster (m0, m1, ...).
	Name string
	// ClientAddr is the host:port where the member serves clients.
	ClientAddr string

	bin  string
	args []string

	mu   sync.Mutex
	proc *Daemon // nil before the first start
}

// StartEtcdCluster starts an n-member cluster of the etcdnode binary bin
// with its data in dir, and waits until every member is ready and the
// cluster has a leader. Ports are chosen among free loopback ports; a
// start that loses a port to another process is retried with new ones.
// On error every member started has been killed.
func StartEtcdCluster(ctx context.Context, bin, dir string, n int) (*EtcdCluster, error) {
	if n < 1 {
		return nil, errors.New("corsdtest: an etcd cluster needs at least one member")
	}
	var err error
	for attempt := range 3 {
		var c *EtcdCluster
		c, err = startEtcdCluster(ctx, bin, filepath.Join(dir, "try"+strconv.Itoa(attempt)), n)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, err
}

func startEtcdCluster(ctx context.Context, bin, dir string, n int) (*EtcdCluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &EtcdCluster{}
	var initial []string
	for i := range n {
		m := &EtcdMember{
			Name:       "m" + strconv.Itoa(i),
			ClientAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2*i])),
			bin:        bin,
		}
		peer := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2*i+1]))
		initial = append(initial, m.Name+"="+peer)
		m.args = []string{
			"--name", m.Name,
			"--data-dir", filepath.Join(dir, m.Name),
			"--peer-url", peer,
			"--client-url", "http://" + m.ClientAddr,
		}
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.args = append(m.args, "--initial-cluster", strings.Join(initial, ","))
	}

	// A member of a new cluster is ready only once a quorum has met, so
	// all start at once.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, m := range c.Members {
		wg.Go(func() { errs[i] = m.Start(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Kill()
		return nil, err
	}
	if err := c.WaitHealthy(ctx); err != nil {
		c.Kill()
		return nil, err
	}
	return c, nil
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago.
func freePorts(n int) ([]int, error) {
	var (
		ports []int
		ls    []net.Listener
	)
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("corsdtest: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Endpoints returns every member's client address (host:port), running or
// not, in member order.
func (c *EtcdCluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientAddr)
	}
	return eps
}

// StoreURL returns corsd's --store value for this cluster under prefix:
// etcd://h1:p1,h2:p2,h3:p3/prefix.
func (c *EtcdCluster) StoreURL(prefix string) string {
	return "etcd://" + strings.Join(c.Endpoints(), ",") + "/" + strings.TrimPrefix(prefix, "/")
}

// Restart starts every member that is not running, at once (a member
// rejoining a cluster without quorum is ready only once a quorum runs),
// and waits until the cluster is healthy.
func (c *EtcdCluster) Restart(ctx context.Context) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, m := range c.Members {
		if m.Running() {
			continue
		}
		wg.Go(func() {
			if err := m.Start(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.WaitHealthy(ctx)
}

// Kill kills every running member with SIGKILL.
func (c *EtcdCluster) Kill() {
	for _, m := range c.Members {
		m.Kill()
	}
}

// Stop stops every running member gracefully, within timeout each.
func (c *EtcdCluster) Stop(timeout time.Duration) error {
	var errs []error
	for _, m := range c.Members {
		if err := m.Stop(timeout); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// newClient returns an etcd client of eps that logs nothing.
func newClient(eps ...string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("corsdtest: etcd client: %w", err)
	}
	return cli, nil
}

// Leader returns the index in Members of the member that the running
// members agree is the leader. It fails when a running member does not
// answer, or they disagree, or there is no leader.
func (c *EtcdCluster) Leader(ctx context.Context) (int, error) {
	var (
		leader uint64
		ids    = map[uint64]int{}
		asked  int
	)
	for i, m := range c.Members {
		if !m.Running() {
			continue
		}
		asked++
		cli, err := newClient(m.ClientAddr)
		if err != nil {
			return -1, err
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(sctx, m.ClientAddr)
		cancel()
		_ = cli.Close()
		if err != nil {
			return -1, fmt.Errorf("corsdtest: etcd member %s: status: %w", m.Name, err)
		}
		ids[st.Header.GetMemberId()] = i
		switch {
		case st.Leader == 0:
			return -1, fmt.Errorf("corsdtest: etcd member %s has no leader", m.Name)
		case leader == 0:
			leader = st.Leader
		case leader != st.Leader:
			return -1, fmt.Errorf("corsdtest: etcd members disagree on the leader (%x, %x)", leader, st.Leader)
		}
	}
	if asked == 0 {
		return -1, errors.New("corsdtest: no etcd member is running")
	}
	i, ok := ids[leader]
	if !ok {
		return -1, fmt.Errorf("corsdtest: etcd leader %x is not a running member", leader)
	}
	return i, nil
}

// WaitHealthy waits until the running members agree on a leader and a
// linearizable read through all of them succeeds (a quorum serves), at
// most ReadyTimeout.
func (c *EtcdCluster) WaitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	var last error
	for {
		if last = c.healthy(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("corsdtest: etcd cluster not healthy: %w", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *EtcdCluster) healthy(ctx context.Context) error {
	if _, err := c.Leader(ctx); err != nil {
		return err
	}
	var eps []string
	for _, m := range c.Members {
		if m.Running() {
			eps = append(eps, m.ClientAddr)
		}
	}
	cli, err := newClient(eps...)
	if err != nil {
		return err
	}
	defer func() { _ = cli.Close() }()
	gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = cli.Get(gctx, "corsdtest-health")
	return err
}

// Start starts the member (again, after Kill or Stop, on its data) and
// waits until it serves clients. Once the member has joined, its data
// directory holds the membership: the initial-cluster flags are ignored.
func (m *EtcdMember) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil {
		select {
		case <-m.proc.Exited():
		default:
			return fmt.Errorf("corsdtest: etcd member %s is running", m.Name)
		}
	}
	d, err := startProcess(ctx, "etcd member "+m.Name, m.bin, m.args)
	if err != nil {
		return err
	}
	m.proc = d
	return nil
}

// Running reports whether the member's process is running.
func (m *EtcdMember) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return false
	}
	select {
	case <-m.proc.Exited():
		return false
	default:
		return true
	}
}

// Kill kills the member's process with SIGKILL, if it runs, and waits
// until it has exited.
func (m *EtcdMember) Kill() {
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// Stop stops the member gracefully (SIGTERM, then SIGKILL after timeout).
// Stopping a member that does not run returns nil.
func (m *EtcdMember) Stop(timeout time.Duration) error {
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.Stop(timeout); err != nil && !errors.Is(err, ErrExited) && !strings.Contains(err.Error(), "killed") {
		return err
	}
	return nil
}

// Logs returns the output of the member's current (or last) process, or
// nil before its first start.
func (m *EtcdMember) Logs() *Logs {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil {
		return nil
	}
	return m.proc.Logs()
}
