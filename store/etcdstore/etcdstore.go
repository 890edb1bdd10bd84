// Package etcdstore is the corsd store for several replicas: the policies,
// their change log and corsd's revision live in one etcd cluster, under a
// key prefix, and every corsd replica opened on the same prefix sees the
// same store.
//
// # Layout
//
// Under the prefix P (such as "/corsd/"):
//
//	P m/schema       "1"
//	P m/revision     corsd's revision, decimal (the last committed write)
//	P m/compacted    every change ≤ it was pruned by retention, decimal
//	P m/restoring    present only while Restore runs; writes wait it out
//	P p/<name>       deterministic protobuf corsd.v1.Policy
//	P h/<host>       the name of the policy that governs host (store.HostKey)
//	P c/<revision>   protobuf corsd.v1.Change; revision zero-padded to 20 digits
//
// # Revisions
//
// corsd keeps its own counter (m/revision) instead of using etcd's
// revision: etcd's is global to the cluster, so other keys sharing it would
// leave gaps, and the store contract promises dense revisions. The change
// log is corsd's own keys (c/…), pruned only by corsd's retention: when an
// operator compacts etcd's history, watchers resume by reading those keys,
// never etcd's history.
//
// # Writes
//
// Every write is one etcd transaction: it compares the mod revisions of
// the counter, the policy key, the host keys it reads or writes and the
// absence of its change key and of a restore in progress, and then puts
// the policy, the host index entries, the counter and the change, and
// deletes the changes beyond retention. Writers in one process take turns
// (they would only conflict on the counter); a write that loses to another
// replica re-reads and retries, up to maxAttempts times, and then fails
// with store.ErrConflict. Nothing is ever half-written.
//
// # Failures
//
// Every etcd call is bounded by the request timeout (WithRequestTimeout);
// an etcd that cannot be reached in time, or has no leader, makes the call
// fail with store.ErrUnavailable. A write that fails so may or may not have
// been applied: read before retrying.
//
// A Store is safe for concurrent use.
package etcdstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/store"
	"github.com/corsd/corsd/store/internal/feed"
)

// Defaults of the options.
const (
	// DefaultDialTimeout bounds how long Open waits for a first connection.
	DefaultDialTimeout = 5 * time.Second
	// DefaultRequestTimeout bounds every etcd call.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultMaxChanges is how many changes the log keeps by default.
	DefaultMaxChanges = 100_000
	// DefaultWatchBuffer is how many events a watcher may have pending
	// before it is cut off with store.ErrWatchTooSlow.
	DefaultWatchBuffer = 1024
	// MaxMessageSize is the client's limit on one request or response.
	// An update of a large policy writes it twice (policy and change);
	// start etcd with --max-request-bytes at least this large.
	MaxMessageSize = 16 << 20
)

const (
	schemaVersion = "1"
	// maxAttempts bounds the retries of a write that loses to another
	// replica.
	maxAttempts = 32
	// maxNameLen bounds policy names (etcd keys).
	maxNameLen = 1024
)

// Option configures Open.
type Option func(*options)

type options struct {
	endpoints      []string
	prefix         string
	tls            *tls.Config
	username       string
	password       string
	dialTimeout    time.Duration
	requestTimeout time.Duration
	maxChanges     int
	watchBuffer    int
	now            func() time.Time
	client         *clientv3.Client
	log            *slog.Logger
}

// WithTLS sets the TLS configuration of the connection to etcd (client
// certificate, CA).
func WithTLS(c *tls.Config) Option { return func(o *options) { o.tls = c } }

// WithAuth sets etcd's user name and password.
func WithAuth(username, password string) Option {
	return func(o *options) { o.username, o.password = username, password }
}

// WithDialTimeout bounds how long Open waits for a first connection
// (default DefaultDialTimeout); ≤ 0 keeps the default.
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.dialTimeout = d
		}
	}
}

// WithRequestTimeout bounds every etcd call (default
// DefaultRequestTimeout); ≤ 0 keeps the default.
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.requestTimeout = d
		}
	}
}

// WithRetention keeps the newest maxChanges changes (default
// DefaultMaxChanges); 0 keeps every change. Every replica on a prefix
// should use the same value.
func WithRetention(maxChanges int) Option {
	return func(o *options) { o.maxChanges = max(maxChanges, 0) }
}

// WithWatchBuffer sets how many events each watcher may have pending
// before it is cut off with store.ErrWatchTooSlow (default
// DefaultWatchBuffer).
func WithWatchBuffer(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.watchBuffer = n
		}
	}
}

// WithClock sets the clock that stamps create, update and change times
// (default time.Now). For tests.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithLogger sets where the store logs that it lost or regained its
// watch of etcd (default: nowhere). While the watch is broken the replica
// does not learn of other replicas' writes.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithClient makes the store use c instead of dialing; Close then leaves
// c open. For tests and for processes that share one client.
func WithClient(c *clientv3.Client) Option { return func(o *options) { o.client = c } }

// Store is a store.Store on etcd. Create it with Open.
type Store struct {
	cli     *clientv3.Client
	ownsCli bool
	opts    options
	prefix  string

	writeMu sync.Mutex // local writers take turns
	hub     feed.Hub
	closed  atomic.Bool
	cancel  context.CancelFunc
	fed     chan struct{} // closed when the feeder ends
	closeMu sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to etcd at endpoints and opens the store under prefix,
// creating its layout when the prefix is empty. It fails with
// store.ErrUnavailable when etcd cannot be reached within the dial and
// request timeouts (or before ctx ends). ctx bounds Open only: the store
// follows etcd until Close.
func Open(ctx context.Context, endpoints []string, prefix string, opts ...Option) (*Store, error) {
	o := options{
		endpoints:      endpoints,
		prefix:         prefix,
		dialTimeout:    DefaultDialTimeout,
		requestTimeout: DefaultRequestTimeout,
		maxChanges:     DefaultMaxChanges,
		watchBuffer:    DefaultWatchBuffer,
		now:            time.Now,
		log:            slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.prefix == "" {
		return nil, fmt.Errorf("etcdstore: open: empty key prefix: %w", store.ErrInvalidArgument)
	}
	s := &Store{opts: o, prefix: o.prefix, cli: o.client}
	if s.cli == nil {
		if len(endpoints) == 0 {
			return nil, fmt.Errorf("etcdstore: open: no endpoints: %w", store.ErrInvalidArgument)
		}
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:          endpoints,
			DialTimeout:        o.dialTimeout,
			TLS:                o.tls,
			Username:           o.username,
			Password:           o.password,
			MaxCallSendMsgSize: MaxMessageSize,
			MaxCallRecvMsgSize: MaxMessageSize,
			Logger:             zap.NewNop(),
			// Keepalives notice a dead member so the client moves on.
			DialKeepAliveTime:    10 * time.Second,
			DialKeepAliveTimeout: 3 * time.Second,
		})
		if err != nil {
			return nil, fmt.Errorf("etcdstore: connect to %v: %w: %w", endpoints, store.ErrUnavailable, err)
		}
		s.cli, s.ownsCli = cli, true
	}
	rev, etcdRev, err := s.init(ctx)
	if err != nil {
		if s.ownsCli {
			_ = s.cli.Close()
		}
		return nil, err
	}
	s.hub.Init("etcdstore", rev)
	// The feeder follows etcd until Close, not until ctx ends.
	feedCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.fed = make(chan struct{})
	go s.feed(feedCtx, etcdRev)
	return s, nil
}

// init creates the layout of an empty prefix, checks the schema and
// returns corsd's revision and etcd's revision of that read.
func (s *Store) init(ctx context.Context) (int64, int64, error) {
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(s.key(keySchema)), "=", 0)).
		Then(
			clientv3.OpPut(s.key(keySchema), schemaVersion),
			clientv3.OpPut(s.key(keyRevision), "0"),
			clientv3.OpPut(s.key(keyCompacted), "0"),
		).
		Else(clientv3.OpGet(s.key(keySchema)), clientv3.OpGet(s.key(keyRevision))).
		Commit()
	if err != nil {
		return 0, 0, s.wrap("open", ctx, err)
	}
	if resp.Succeeded {
		return 0, resp.Header.GetRevision(), nil
	}
	schema := resp.Responses[0].GetResponseRange().GetKvs()
	if len(schema) != 1 || string(schema[0].Value) != schemaVersion {
		got := ""
		if len(schema) == 1 {
			got = string(schema[0].Value)
		}
		return 0, 0, fmt.Errorf("etcdstore: open: prefix %q holds schema version %q; this corsd supports %q", s.prefix, got, schemaVersion)
	}
	rev, err := intValue(resp.Responses[1].GetResponseRange().GetKvs(), keyRevision)
	if err != nil {
		return 0, 0, err
	}
	return rev, resp.Header.GetRevision(), nil
}

// Close stops the watches (store.ErrClosed) and, unless the client was
// given with WithClient, closes the connection. Later calls fail with
// store.ErrClosed.
func (s *Store) Close() error {
	s.closeMu.Do(func() {
		s.closed.Store(true)
		s.cancel()
		<-s.fed
		s.hub.Close()
		if s.ownsCli {
			_ = s.cli.Close()
		}
	})
	return nil
}

// start begins an operation: it fails when ctx is done or s is closed.
func (s *Store) start(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("etcdstore: %s: %w", op, err)
	}
	if s.closed.Load() {
		return fmt.Errorf("etcdstore: %s: %w", op, store.ErrClosed)
	}
	return nil
}

// reqCtx bounds one etcd call by the request timeout.
func (s *Store) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.requestTimeout)
}

// wrap turns an etcd client error into the store's: the caller's own
// cancellation stays itself, a closed store is ErrClosed, an unreachable
// or leaderless cluster (or one that did not answer within the request
// timeout) is ErrUnavailable.
func (s *Store) wrap(op string, ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() {
		return fmt.Errorf("etcdstore: %s: %w", op, store.ErrClosed)
	}
	if parent := context.Cause(ctx); parent != nil && !errors.Is(parent, context.DeadlineExceeded) {
		return fmt.Errorf("etcdstore: %s: %w", op, parent)
	}
	if errors.Is(err, context.Canceled) && ctx.Err() == nil {
		return fmt.Errorf("etcdstore: %s: %w", op, err)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, clientv3.ErrNoAvailableEndpoints),
		errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrTimeout),
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail), errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost):
		return fmt.Errorf("etcdstore: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return fmt.Errorf("etcdstore: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	// The client turns etcd's own errors into rpctypes.EtcdError, which
	// status.Code does not see through: "leader changed", "server stopped"
	// and the like are Unavailable too (seen when an etcd member is killed).
	if ee, ok := errors.AsType[rpctypes.EtcdError](err); ok && (ee.Code() == codes.Unavailable || ee.Code() == codes.DeadlineExceeded) {
		return fmt.Errorf("etcdstore: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	return fmt.Errorf("etcdstore: %s: %w", op, err)
}

func (s *Store) now() time.Time { return s.opts.now() }

// Keys.
const (
	keySchema    = "m/schema"
	keyRevision  = "m/revision"
	keyCompacted = "m/compacted"
	keyRestoring = "m/restoring"
	dirPolicies  = "p/"
	dirHosts     = "h/"
	dirChanges   = "c/"
)

func (s *Store) key(k string) string { return s.prefix + k }

func (s *Store) policyKey(name string) string { return s.prefix + dirPolicies + name }

func (s *Store) hostKey(host string) string { return s.prefix + dirHosts + store.HostKey(host) }

func (s *Store) changeKey(rev int64) string {
	return fmt.Sprintf("%s%s%020d", s.prefix, dirChanges, rev)
}

// intValue parses a decimal counter read from etcd.
func intValue(kvs []*mvccpb.KeyValue, name string) (int64, error) {
	if len(kvs) != 1 {
		return 0, fmt.Errorf("etcdstore: the key %s is missing; the prefix does not hold a corsd store", name)
	}
	v, err := strconv.ParseInt(string(kvs[0].Value), 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("etcdstore: the key %s holds %q, not a revision", name, kvs[0].Value)
	}
	return v, nil
}
