package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/internal/policypb"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// Watcher keeps a local, compiled snapshot of some policies, fed by
// DecisionService.WatchPolicies. Lookups (Policy, Middleware) read the
// snapshot through an atomic pointer: no lock, no network call.
//
// Run keeps the stream open: after a disconnect it resumes from the last
// revision it saw, retrying with exponential backoff and full jitter; when
// that revision was compacted away (OUT_OF_RANGE) it resyncs from the
// current state. Meanwhile lookups keep answering from the last snapshot.
//
// A name that is not there is never silent: when the first snapshot from
// corsd arrives (and after every resync), the Watcher logs a warning, once
// per name, for each watched name it lacks, and for each name given to
// Middleware or NewMiddleware that it lacks; when such a policy is deleted
// later, it logs a warning that the policy disappeared (its middleware then
// decides "no policy"), and an info line if it comes back.
//
// A Watcher is safe for concurrent use. Build it with NewWatcher.
type Watcher struct {
	c     *Client
	names []string // sorted, deduplicated; empty: every policy
	want  map[string]bool
	cfg   watchConfig

	snap        atomic.Pointer[snapshot]
	lastContact atomic.Int64 // unix nanoseconds of the last message from corsd
	ready       chan struct{}
	readyOnce   sync.Once
	running     atomic.Bool
	dirty       chan struct{} // signals the cache writer
	forceResync bool          // owned by Run's goroutine

	mu     sync.Mutex      // guards the fields below
	synced bool            // a snapshot from corsd has been published
	used   map[string]bool // names given to Middleware; checked like w.names
	absent map[string]bool // checked names already logged as missing
}

// snapshot is immutable once published.
type snapshot struct {
	revision int64
	policies map[string]*entry
}

type entry struct {
	pb       *corsdv1.Policy
	compiled *policy.Policy
}

// WatchOption configures a Watcher.
type WatchOption func(*watchConfig)

type watchConfig struct {
	cacheFile  string
	logger     *slog.Logger
	backoffMin time.Duration
	backoffMax time.Duration
}

// WithCacheFile persists the snapshot to path after every change (written
// to a temporary file, synced, then renamed over path, mode 0600), and loads
// it in NewWatcher, so a restarted service decides at once, before corsd
// answers. A cache file that cannot be read, is corrupt, or was written for
// another set of names is ignored with a logged warning.
func WithCacheFile(path string) WatchOption {
	return func(c *watchConfig) { c.cacheFile = path }
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) WatchOption {
	return func(c *watchConfig) { c.logger = l }
}

// WithBackoff sets the reconnection delays: the n-th consecutive retry
// waits a random duration in [0, min(max, initial·2ⁿ)) (full jitter).
// Defaults: 100ms and 5s.
func WithBackoff(initial, max time.Duration) WatchOption {
	return func(c *watchConfig) { c.backoffMin, c.backoffMax = initial, max }
}

// NewWatcher returns a Watcher of the named policies (`policies/{id}`; none
// for every policy). It loads the cache file, if any, but does not connect:
// call Run.
func NewWatcher(c *Client, names []string, opts ...WatchOption) (*Watcher, error) {
	if c == nil {
		return nil, errors.New("client: NewWatcher needs a Client")
	}
	cfg := watchConfig{logger: slog.Default(), backoffMin: 100 * time.Millisecond, backoffMax: 5 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.backoffMin <= 0 || cfg.backoffMax < cfg.backoffMin {
		return nil, fmt.Errorf("client: invalid backoff %v..%v", cfg.backoffMin, cfg.backoffMax)
	}
	for _, n := range names {
		if err := checkName(n); err != nil {
			return nil, err
		}
	}
	w := &Watcher{
		c:     c,
		names: normalizeNames(names),
		cfg:   cfg,
		ready: make(chan struct{}),
		dirty: make(chan struct{}, 1),
	}
	if len(w.names) > 0 {
		w.want = make(map[string]bool, len(w.names))
		for _, n := range w.names {
			w.want[n] = true
		}
	}
	w.lastContact.Store(time.Now().UnixNano())
	if cfg.cacheFile != "" {
		w.loadCache()
	}
	return w, nil
}

func checkName(n string) error {
	if id, ok := strings.CutPrefix(n, "policies/"); !ok || id == "" || strings.Contains(id, "/") {
		return fmt.Errorf("client: %q is not a policy name; use policies/{id}", n)
	}
	return nil
}

func normalizeNames(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}

// Policy returns the compiled policy named name (`policies/{id}`) from the
// current snapshot, or nil when it is unknown or no snapshot has arrived
// yet. A nil *policy.Policy decides "no policy".
func (w *Watcher) Policy(name string) *policy.Policy {
	s := w.snap.Load()
	if s == nil {
		return nil
	}
	if e := s.policies[name]; e != nil {
		return e.compiled
	}
	return nil
}

// Ready reports whether the Watcher has a snapshot to decide from, received
// from corsd or loaded from the cache file.
func (w *Watcher) Ready() bool { return w.snap.Load() != nil }

// WaitReady blocks until Ready or until ctx ends, and then returns ctx's
// error.
func (w *Watcher) WaitReady(ctx context.Context) error {
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Revision returns the store revision the snapshot reflects (0 before the
// first snapshot).
func (w *Watcher) Revision() int64 {
	if s := w.snap.Load(); s != nil {
		return s.revision
	}
	return 0
}

// Staleness returns the time since corsd last sent anything on the watch
// stream (a change, the initial state or a progress notice). On a healthy,
// idle stream it stays below corsd's progress interval (10 s by default);
// alert well above that. Before the first message it counts from when the
// cache file was written, or from NewWatcher without a cache.
func (w *Watcher) Staleness() time.Duration {
	return time.Since(time.Unix(0, w.lastContact.Load()))
}

// Middleware returns Middleware(policyName, w, opts...): an http middleware
// that enforces the named policy from w's snapshot. It cannot report an
// unknown name (w logs it): prefer NewMiddleware.
func (w *Watcher) Middleware(policyName string, opts ...Option) func(http.Handler) http.Handler {
	return Middleware(policyName, w, opts...)
}

// NewMiddleware returns NewMiddleware(policyName, w, opts...): the
// middleware, or an error wrapping ErrUnknownPolicy when w does not watch
// policyName, or when w is ready and its snapshot lacks it.
func (w *Watcher) NewMiddleware(policyName string, opts ...Option) (func(http.Handler) http.Handler, error) {
	return NewMiddleware(policyName, w, opts...)
}

// expect adds name to the names w checks (see Watcher), and logs at once
// if the snapshot from corsd lacks it.
func (w *Watcher) expect(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.want != nil && !w.want[name] {
		if !w.absent[name] {
			w.markAbsent(name)
			w.cfg.logger.Warn("client: middleware for a policy the Watcher does not watch; it decides \"no policy\"", "policy", name, "watched", w.names)
		}
		return
	}
	if w.want == nil {
		if w.used == nil {
			w.used = make(map[string]bool)
		}
		w.used[name] = true
	}
	if s := w.snap.Load(); w.synced && s != nil {
		w.note(context.Background(), name, s, s)
	}
}

// noteSync checks every checked name against next, the snapshot of a
// (re)sync that replaces prev (nil, or from the cache or an older stream).
func (w *Watcher) noteSync(ctx context.Context, prev, next *snapshot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.synced = true
	for _, n := range w.names {
		w.note(ctx, n, prev, next)
	}
	for _, n := range slices.Sorted(maps.Keys(w.used)) {
		w.note(ctx, n, prev, next)
	}
}

// noteChange checks name, just put or deleted, if it is a checked name.
func (w *Watcher) noteChange(ctx context.Context, name string, prev, next *snapshot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.want[name] || w.used[name] {
		w.note(ctx, name, prev, next)
	}
}

// note logs what became of name from prev to next. w.mu must be held.
func (w *Watcher) note(ctx context.Context, name string, prev, next *snapshot) {
	had := prev != nil && prev.policies[name] != nil
	has := next.policies[name] != nil
	switch {
	case has:
		if w.absent[name] {
			delete(w.absent, name)
			w.cfg.logger.InfoContext(ctx, "client: watched policy now exists", "policy", name, "revision", next.revision)
		}
	case had:
		w.markAbsent(name)
		w.cfg.logger.WarnContext(ctx, "client: watched policy disappeared; its middleware now decides \"no policy\"", "policy", name, "revision", next.revision)
	case !w.absent[name]:
		w.markAbsent(name)
		w.cfg.logger.WarnContext(ctx, "client: watched policy does not exist; its middleware decides \"no policy\"", "policy", name, "revision", next.revision)
	}
}

func (w *Watcher) markAbsent(name string) {
	if w.absent == nil {
		w.absent = make(map[string]bool)
	}
	w.absent[name] = true
}

// Run watches the policies until ctx ends, and then returns nil. It returns
// an error at once if another Run of w is in progress.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("client: Watcher.Run is already running")
	}
	defer w.running.Store(false)

	var cacheDone chan struct{}
	if w.cfg.cacheFile != "" {
		cacheDone = make(chan struct{})
		go w.cacheWriter(ctx, cacheDone)
	}
	defer func() {
		if cacheDone != nil {
			<-cacheDone
		}
	}()

	attempt := 0
	for {
		progressed, err := w.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			attempt = 0
		}
		switch status.Code(err) {
		case codes.OutOfRange:
			// Our revision was compacted away: start again from the
			// current state. The old snapshot keeps serving meanwhile.
			w.cfg.logger.WarnContext(ctx, "client: watch revision compacted; resyncing", "revision", w.Revision())
			w.forceResync = true
		default:
			w.cfg.logger.WarnContext(ctx, "client: watch stream ended; reconnecting", "err", err, "revision", w.Revision())
		}
		delay := w.backoff(attempt)
		attempt++
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// backoff returns a full-jitter delay for the n-th consecutive retry.
func (w *Watcher) backoff(n int) time.Duration {
	ceil := w.cfg.backoffMax
	if n < 30 {
		if d := w.cfg.backoffMin << n; d > 0 && d < ceil {
			ceil = d
		}
	}
	return rand.N(ceil) + time.Millisecond //nolint:gosec // G404: jitter needs no cryptographic randomness
}

// watch runs one stream until it fails. progressed reports whether corsd
// sent anything, which resets the backoff.
func (w *Watcher) watch(ctx context.Context) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	start := w.Revision()
	if w.forceResync || w.snap.Load() == nil {
		start = 0
	}
	stream, err := w.c.decisions.WatchPolicies(ctx, &corsdv1.WatchPoliciesRequest{Names: w.names, StartRevision: start})
	if err != nil {
		return false, err
	}
	syncing := start == 0
	var pending map[string]*entry
	if syncing {
		pending = make(map[string]*entry)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return progressed, err
		}
		progressed = true
		w.lastContact.Store(time.Now().UnixNano())

		switch ev.GetType() {
		case corsdv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT:
			if !syncing {
				w.apply(ctx, ev.GetRevision(), ev.GetName(), ev.GetPolicy())
				continue
			}
			if !w.wanted(ev.GetName()) {
				continue
			}
			if e := w.compile(ctx, ev.GetPolicy(), w.current(ev.GetName())); e != nil {
				pending[ev.GetName()] = e
			}
		case corsdv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED:
			if syncing {
				next := &snapshot{revision: ev.GetRevision(), policies: pending}
				prev := w.snap.Load()
				w.publish(next)
				w.noteSync(ctx, prev, next)
				syncing, pending = false, nil
				w.forceResync = false
				w.cfg.logger.InfoContext(ctx, "client: watch synced", "revision", ev.GetRevision(), "policies", w.count())
			}
		case corsdv1.WatchEventType_WATCH_EVENT_TYPE_PUT:
			if syncing { // not expected before SYNCED; keep it for the snapshot
				if w.wanted(ev.GetName()) {
					if e := w.compile(ctx, ev.GetPolicy(), w.current(ev.GetName())); e != nil {
						pending[ev.GetName()] = e
					}
				}
				continue
			}
			w.apply(ctx, ev.GetRevision(), ev.GetName(), ev.GetPolicy())
		case corsdv1.WatchEventType_WATCH_EVENT_TYPE_DELETE:
			if syncing {
				delete(pending, ev.GetName())
				continue
			}
			w.apply(ctx, ev.GetRevision(), ev.GetName(), nil)
		case corsdv1.WatchEventType_WATCH_EVENT_TYPE_PROGRESS:
			if !syncing {
				w.advance(ev.GetRevision())
			}
		}
	}
}

func (w *Watcher) wanted(name string) bool { return w.want == nil || w.want[name] }

func (w *Watcher) count() int {
	if s := w.snap.Load(); s != nil {
		return len(s.policies)
	}
	return 0
}

func (w *Watcher) current(name string) *entry {
	if s := w.snap.Load(); s != nil {
		return s.policies[name]
	}
	return nil
}

// compile compiles pb, or keeps prev (which may be nil) when corsd sent a
// policy this engine refuses: deciding with the last good version beats
// deciding with none.
func (w *Watcher) compile(ctx context.Context, pb *corsdv1.Policy, prev *entry) *entry {
	p, err := policypb.Compile(pb)
	if err != nil {
		w.cfg.logger.ErrorContext(ctx, "client: cannot compile policy from corsd; keeping the previous version",
			"policy", pb.GetName(), "revision", pb.GetRevision(), "err", err)
		return prev
	}
	return &entry{pb: pb, compiled: p}
}

// apply publishes a snapshot with one policy put (pb != nil) or deleted.
func (w *Watcher) apply(ctx context.Context, rev int64, name string, pb *corsdv1.Policy) {
	old := w.snap.Load()
	if old == nil { // resumed streams only follow a snapshot
		old = &snapshot{}
	}
	next := &snapshot{revision: max(rev, old.revision), policies: make(map[string]*entry, len(old.policies)+1)}
	maps.Copy(next.policies, old.policies)
	if pb == nil {
		delete(next.policies, name)
	} else if w.wanted(name) {
		if e := w.compile(ctx, pb, old.policies[name]); e != nil {
			next.policies[name] = e
		}
	}
	w.publish(next)
	w.noteChange(ctx, name, old, next)
}

// advance moves the revision forward without a change (a progress notice).
func (w *Watcher) advance(rev int64) {
	old := w.snap.Load()
	if old == nil || rev <= old.revision {
		return
	}
	// Not worth a cache write: resuming from an older revision only
	// replays changes that are already in the cache.
	w.snap.Store(&snapshot{revision: rev, policies: old.policies})
}

// publish swaps s in and asks for a cache write.
func (w *Watcher) publish(s *snapshot) {
	w.snap.Store(s)
	w.readyOnce.Do(func() { close(w.ready) })
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}
