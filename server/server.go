package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// Limits applied by ServerOptions.
const (
	// MaxRecvMsgSize bounds one request message; larger ones fail with
	// ResourceExhausted.
	MaxRecvMsgSize = 1 << 20
	// MaxHeaderListSize bounds the request metadata of one call.
	MaxHeaderListSize = 16 << 10
	// MaxConcurrentStreams bounds the concurrent calls of one connection.
	MaxConcurrentStreams = 1000
	// maxFieldLen bounds each string field of a decision request.
	maxFieldLen = 8 << 10
)

// serviceNames are reported by the health service.
var serviceNames = []string{
	corsdv1.DecisionService_ServiceDesc.ServiceName,
	corsdv1.PolicyService_ServiceDesc.ServiceName,
	authv3.Authorization_ServiceDesc.ServiceName,
}

// Option configures a Server.
type Option func(*options) error

type options struct {
	tokens           []Token
	decisionAuth     bool
	defaultPolicy    string
	log              *slog.Logger
	logDecisions     bool
	progressInterval time.Duration
	maxWatchers      int
	watchSendTimeout time.Duration
	probeInterval    time.Duration
	retryMin         time.Duration
	retryMax         time.Duration
	decisionRecord   DecisionRecord
}

// WithTokens configures the bearer tokens. Without tokens, admin calls (and
// decision calls with WithDecisionAuth) are accepted only from loopback
// peers, recorded as actor "local".
func WithTokens(tokens ...Token) Option {
	return func(o *options) error {
		o.tokens = append(o.tokens, tokens...)
		return nil
	}
}

// WithDecisionAuth requires a token with the `check` scope for
// DecisionService and ext_authz calls. Without it they are open.
func WithDecisionAuth() Option {
	return func(o *options) error {
		o.decisionAuth = true
		return nil
	}
}

// WithDefaultPolicy sets the policy applied when a request names none and
// no policy governs its host. name is `policies/{id}` or a bare id.
func WithDefaultPolicy(name string) Option {
	return func(o *options) error {
		n, err := NormalizePolicyName(name)
		if err != nil {
			return err
		}
		o.defaultPolicy = n
		return nil
	}
}

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("server: nil logger")
		}
		o.log = l
		return nil
	}
}

// WithDecisionLog logs every decision at info level. Refusals by
// report-only policies are logged even without it.
func WithDecisionLog() Option {
	return func(o *options) error {
		o.logDecisions = true
		return nil
	}
}

// WithStoreProbeInterval sets how often the server asks the store for its
// revision to measure the snapshot's staleness (default 1 s; see the
// corsd_snapshot_stale_seconds and corsd_store_reachable metrics).
func WithStoreProbeInterval(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("server: store probe interval %v must be positive", d)
		}
		o.probeInterval = d
		return nil
	}
}

// WithProgressInterval sets how long an idle WatchPolicies stream waits
// before sending a PROGRESS event (default 10 s).
func WithProgressInterval(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("server: progress interval %v must be positive", d)
		}
		o.progressInterval = d
		return nil
	}
}

// Server serves corsd's gRPC services over one store. It is safe for
// concurrent use. Create it with New, then register it on a grpc.Server
// built with its ServerOptions; Close it after the grpc.Server stopped.
type Server struct {
	store   store.Store
	opts    options
	log     *slog.Logger
	auth    *authenticator
	metrics *metrics
	// unknownPolicyWarned is when the last unknown-policy warning was
	// logged (Unix nanoseconds).
	unknownPolicyWarned atomic.Int64
	live                *live
	health              *health.Server
	watches             *watchSlots

	ready     chan struct{} // closed when the initial load finished
	readyOnce sync.Once
	shutting  atomic.Bool
	shutdown  chan struct{} // closed by Shutdown
	shutOnce  sync.Once
	cancel    context.CancelFunc
	loopDone  chan struct{}
	closeOnce sync.Once
	stale     *staleness
	probes    sync.WaitGroup // the staleness probe
}

// New returns a Server over st and starts loading the policies from it in
// the background; the server is ready (WaitReady, /readyz, health SERVING)
// once the load finished. The caller keeps ownership of st.
func New(st store.Store, opts ...Option) (*Server, error) {
	if st == nil {
		return nil, errors.New("server: nil store")
	}
	o := options{
		progressInterval: 10 * time.Second, probeInterval: time.Second, retryMin: 100 * time.Millisecond, retryMax: 5 * time.Second,
		maxWatchers: DefaultMaxWatchers, watchSendTimeout: DefaultWatchSendTimeout,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	auth, err := newAuthenticator(o.tokens, o.decisionAuth)
	if err != nil {
		return nil, err
	}
	m := newMetrics()
	m.watchStore(st)
	s := &Server{
		store:    st,
		opts:     o,
		log:      o.log,
		auth:     auth,
		metrics:  m,
		watches:  newWatchSlots(o.maxWatchers, m),
		live:     newLive(m, o.log, o.defaultPolicy),
		health:   health.NewServer(),
		ready:    make(chan struct{}),
		shutdown: make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	for _, name := range serviceNames {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	s.stale = newStaleness(s, o.probeInterval)
	m.reg.MustRegister(s.stale.collectors()...)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.watchLoop(ctx)
	s.probes.Go(func() { s.stale.run(ctx) })
	return s, nil
}

// ServerOptions returns the options to build the grpc.Server with: the
// codec, the interceptor chain (metrics, undecodable requests, panic
// recovery, auth) and the limits.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		// proto; an undecodable request reaches the interceptors marked, and
		// kept ext_authz answers are sent as encoded
		grpc.ForceServerCodecV2(newRequestCodec()),
		grpc.ChainUnaryInterceptor(s.metrics.unary, decodeUnary, s.recoverUnary, s.auth.unary),
		grpc.ChainStreamInterceptor(s.metrics.stream, decodeStream, s.recoverStream, s.auth.stream),
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
		grpc.MaxHeaderListSize(MaxHeaderListSize),
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		grpc.ConnectionTimeout(10 * time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			// Envoy and SDK clients may ping idle connections; refuse floods.
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    30 * time.Second,
			Timeout: 10 * time.Second,
		}),
	}
}

// Register registers the services on gs: DecisionService, PolicyService,
// Envoy's ext_authz v3 Authorization, health and reflection.
func (s *Server) Register(gs *grpc.Server) {
	corsdv1.RegisterDecisionServiceServer(gs, &decisionService{s: s})
	corsdv1.RegisterPolicyServiceServer(gs, &policyService{s: s})
	gs.RegisterService(&authzServiceDesc, newAuthzServerRecord(s, s.opts.decisionRecord)) // answers kept encoded (extauthz_wire.go)
	healthpb.RegisterHealthServer(gs, healthService{Server: s.health, s: s})
	reflection.Register(gs)
}

// HTTPHandler serves /metrics (Prometheus), /healthz (the process is alive)
// and /readyz (policies loaded and not shutting down; it stays ready, and
// says so, while the store is unreachable).
func (s *Server) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch {
		case s.shutting.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("shutting down\n"))
		case !s.Ready():
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("loading policies\n"))
		default:
			// Still ready while the store is unreachable: the snapshot
			// decides, and taking every replica out of service during a
			// store outage would turn it into a decision outage.
			if since, down := s.stale.outage(); down {
				_, _ = fmt.Fprintf(w, "ready; store unreachable for %s, deciding from revision %d\n", time.Since(since).Round(time.Second), s.stale.snapshotRev())
				return
			}
			_, _ = w.Write([]byte("ready\n"))
		}
	})
	return mux
}

// Ready reports whether the initial load of the policies finished.
func (s *Server) Ready() bool {
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

// WaitReady blocks until the initial load finished or ctx ends.
func (s *Server) WaitReady(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("server: waiting for the initial load: %w", ctx.Err())
	}
}

func (s *Server) markReady() {
	s.readyOnce.Do(func() {
		close(s.ready)
		if s.shutting.Load() {
			return
		}
		s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		for _, name := range serviceNames {
			s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
		}
		snap := s.live.cur.Load()
		s.log.Info("policies loaded", "policies", len(snap.byName), "revision", snap.rev)
		if dc, ok := s.store.(damageCounter); ok && dc.DamagedRecords() > 0 {
			s.log.Error("damaged records were left out of the snapshot: their policies do not serve; GetPolicy names each one (DataLoss); delete and recreate them, or restore a backup", "damaged", dc.DamagedRecords())
		}
		if d := s.opts.defaultPolicy; d != "" && snap.byName[d] == nil {
			s.log.Warn("the default policy does not exist (yet); requests without a policy get none", "default_policy", d)
		}
	})
}

// SetTokens replaces the tokens that authorize the next calls (a token
// rotation without a restart). The tokens are validated as WithTokens does;
// on error the current ones stay. An empty list makes admin calls
// loopback-only, as at start without tokens.
func (s *Server) SetTokens(tokens ...Token) error { return s.auth.setTokens(tokens) }

// Shutdown starts a graceful shutdown: health reports NOT_SERVING, /readyz
// 503, WatchPolicies streams end with Unavailable so that their clients
// resume elsewhere, and health watches end the same way once they have
// delivered NOT_SERVING. Calls in flight go on; stop the grpc.Server next.
func (s *Server) Shutdown() {
	s.shutOnce.Do(func() {
		s.shutting.Store(true)
		s.health.Shutdown()
		close(s.shutdown)
	})
}

// Close shuts down (see Shutdown) and stops following the store. It does
// not close the store.
func (s *Server) Close() error {
	s.Shutdown()
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.loopDone
		s.probes.Wait()
	})
	return nil
}

// watchLoop loads the policies and follows the store's changes until ctx
// ends or the store closes. A broken watch resumes from the last revision
// received; a compacted one reloads everything.
func (s *Server) watchLoop(ctx context.Context) {
	defer close(s.loopDone)
	var since int64
	delay := s.opts.retryMin
	for {
		w, err := s.store.Watch(ctx, since)
		if err == nil {
			var progressed bool
			since, progressed, err = s.follow(w, since)
			if progressed {
				delay = s.opts.retryMin
			}
		}
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, store.ErrClosed):
			s.log.Info("store closed; the policies are no longer followed")
			return
		case errors.Is(err, store.ErrCompacted):
			s.log.Warn("the watch revision was compacted; reloading every policy", "revision", since)
			since = 0
			continue
		case err == nil:
			err = errors.New("watch ended")
		}
		s.log.Warn("policy watch failed; resuming", "revision", since, "retry_in", delay, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, s.opts.retryMax)
	}
}

// follow applies the events of w to the snapshot and returns the revision
// to resume from, whether any event arrived, and why the watch ended.
func (s *Server) follow(w store.Watch, since int64) (int64, bool, error) {
	var state map[string]*corsdv1.Policy
	if since == 0 {
		state = map[string]*corsdv1.Policy{}
	}
	progressed := false
	for ev := range w.Events() {
		progressed = true
		switch ev.Type {
		case store.EventSnapshot:
			if state != nil {
				state[ev.Name] = ev.Policy
			}
		case store.EventSynced:
			if state != nil {
				s.live.reset(state, ev.Revision)
				state = nil
				s.markReady()
			}
			since = ev.Revision
		case store.EventPut:
			s.live.put(ev.Policy, true)
			since = ev.Revision
		case store.EventDelete:
			s.live.del(ev.Name, ev.Revision, true)
			since = ev.Revision
		}
	}
	if state != nil {
		since = 0 // the initial state was not complete: load it again
	}
	return since, progressed, w.Err()
}

func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.recovered(ctx, info.FullMethod, r)
		}
	}()
	return handler(ctx, req)
}

func (s *Server) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.recovered(ss.Context(), info.FullMethod, r)
		}
	}()
	return handler(srv, ss)
}

func (s *Server) recovered(ctx context.Context, method string, r any) error {
	s.log.ErrorContext(ctx, "panic in handler", "method", method, "panic", r, "stack", string(debug.Stack()))
	return status.Error(codes.Internal, "internal error")
}

// observeWrite records the duration of a store write.
func (s *Server) observeWrite(op string, start time.Time) {
	s.metrics.storeWrite.WithLabelValues(op).Observe(time.Since(start).Seconds())
}
