// Package feed implements store.Watch once for every backend: a Hub that
// hands committed changes to watchers in revision order, and watchers that
// send a consistent initial state, catch up from the change log and follow
// live changes with no gap and no duplicate, in memory bounded by the watch
// buffer whatever the size of the store.
//
// A backend provides a Source (its snapshot and change-log reads) and calls
// Hub.Commit once per committed revision, in any order.
package feed

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// LogPage is how many changes a catching-up watcher asks Source.Log for.
const LogPage = 256

// Filter is the set of policy names a watch is limited to; nil means all.
type Filter map[string]bool

// NewFilter returns the filter of names (nil for none).
func NewFilter(names []string) Filter {
	if len(names) == 0 {
		return nil
	}
	f := make(Filter, len(names))
	for _, n := range names {
		f[n] = true
	}
	return f
}

// Match reports whether the filter keeps name.
func (f Filter) Match(name string) bool { return f == nil || f[name] }

// Source is what a backend gives its watchers.
type Source interface {
	// Snapshot calls emit for every policy the filter keeps, in name order,
	// from one consistent state, and returns that state's revision. It must
	// hold at most a constant number of policies at once (emit blocks while
	// the reader is slow). emit's error ends it and is returned.
	Snapshot(ctx context.Context, f Filter, emit func(*corsdv1.Policy) error) (int64, error)
	// Log returns the logged changes after revision after, oldest first, at
	// most n (fewer to bound memory; none only when there are none). A change that f leaves out comes back as an Event of Type 0
	// with only its revision (the backend need not decode it). When after
	// was pruned meanwhile, the error wraps store.ErrWatchTooSlow.
	Log(ctx context.Context, after int64, f Filter, n int) ([]store.Event, error)
	// CheckSince fails with an error wrapping store.ErrCompacted when the
	// change log no longer holds the changes after since.
	CheckSince(ctx context.Context, since int64) error
}

// Hub hands committed changes to watchers in revision order. Commit may be
// called in any order (bbolt runs commit handlers after it releases its
// writer lock); Hub holds a change back until every earlier revision was
// handed out. The zero Hub is not usable; call Init.
type Hub struct {
	prefix string // of error messages, such as "boltstore"

	mu        sync.Mutex
	closed    bool
	published int64 // every revision ≤ published was handed out
	pending   map[int64]store.Event
	watchers  map[*watcher]struct{}
	wg        sync.WaitGroup
}

// Init prepares h; rev is the revision already committed.
func (h *Hub) Init(prefix string, rev int64) {
	h.prefix = prefix
	h.published = rev
	h.pending = make(map[int64]store.Event)
	h.watchers = make(map[*watcher]struct{})
}

// Published returns the last revision handed out.
func (h *Hub) Published() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.published
}

// Commit is called once per committed revision, after the commit. A
// revision at or below the last one handed out is ignored.
func (h *Hub) Commit(ev store.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ev.Revision <= h.published {
		return
	}
	h.pending[ev.Revision] = ev
	for {
		next, ok := h.pending[h.published+1]
		if !ok {
			return
		}
		delete(h.pending, next.Revision)
		h.published = next.Revision
		for w := range h.watchers {
			w.push(next)
		}
	}
}

// Skip hands out nothing up to rev and cuts every watcher off with err
// (wrapping store.ErrWatchTooSlow): for a backend that lost track of the
// changes up to rev, so that watchers resume from the log.
func (h *Hub) Skip(rev int64, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev <= h.published {
		return
	}
	for r := range h.pending {
		if r <= rev {
			delete(h.pending, r)
		}
	}
	h.published = rev
	for w := range h.watchers {
		w.stop(err)
	}
}

// Close ends every watch with store.ErrClosed and waits for their
// goroutines. Later Watch calls fail with store.ErrClosed.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	for w := range h.watchers {
		w.stop(fmt.Errorf("%s: watch: %w", h.prefix, store.ErrClosed))
	}
	h.mu.Unlock()
	h.wg.Wait()
}

func (h *Hub) add(w *watcher) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return fmt.Errorf("%s: watch: %w", h.prefix, store.ErrClosed)
	}
	h.watchers[w] = struct{}{}
	h.wg.Add(1)
	return nil
}

func (h *Hub) remove(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.watchers, w)
}

// Watch starts a watch; see store.Store. limit is the watch buffer. Events
// of type EventSnapshot and EventPut may carry a policy shared with other
// watchers: readers treat it as read-only.
func (h *Hub) Watch(ctx context.Context, src Source, since int64, names []string, limit int) (store.Watch, error) {
	if since < 0 {
		return nil, fmt.Errorf("%s: watch: negative revision %d: %w", h.prefix, since, store.ErrInvalidArgument)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: watch: %w", h.prefix, err)
	}
	w := &watcher{
		ctx:        ctx,
		h:          h,
		src:        src,
		filter:     NewFilter(names),
		out:        make(chan store.Event),
		limit:      max(limit, 1),
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		catchingUp: true,
		needLog:    since > 0,
		last:       since,
		since:      since,
	}
	// Register before reading. A change handed out before the registration
	// was committed before the snapshot or the log reads began, so they see
	// it; one handed out after it reaches the queue. What both saw is
	// dropped by revision: no gap, no duplicate.
	if err := h.add(w); err != nil {
		return nil, err
	}
	if since > 0 {
		if err := src.CheckSince(ctx, since); err != nil {
			h.remove(w)
			h.wg.Done()
			return nil, err
		}
	}
	go w.run() //nolint:contextcheck // the goroutine ends with w.ctx, the caller's context
	return w, nil
}

// item is a queued event. A run of changes the filter leaves out is one
// item with Type 0 covering revisions from..ev.Revision.
type item struct {
	ev   store.Event
	from int64
}

// watcher is one Watch. The hub pushes live changes into its bounded queue
// without ever blocking; the watcher's goroutine delivers them.
//
// While the watcher is catching up (sending the snapshot or reading the
// change log) a full queue is not fatal as long as its reader makes
// progress: the watcher drops the queue and reads the log again from the
// last revision it sent. A reader that took nothing since the previous
// overflow, or any overflow once live, cuts the watcher off with
// store.ErrWatchTooSlow.
type watcher struct {
	ctx    context.Context
	h      *Hub
	src    Source
	filter Filter
	out    chan store.Event
	limit  int
	wake   chan struct{} // a push happened
	done   chan struct{} // closed by stop
	since  int64

	mu         sync.Mutex
	queue      []item
	catchingUp bool
	needLog    bool  // the change log holds events the queue lost
	sentAtDrop int64 // sent when the queue last overflowed
	stopErr    error

	sent atomic.Int64 // events taken by the reader

	// Owned by the goroutine.
	last    int64 // revision of the last change sent or skipped
	skipped bool  // changes were left out since the last event sent

	errMu sync.Mutex
	err   error
}

var _ store.Watch = (*watcher)(nil)

// Events returns the channel of events; see store.Watch.
func (w *watcher) Events() <-chan store.Event { return w.out }

// Err returns nil while Events is open, then why it closed.
func (w *watcher) Err() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

func (w *watcher) push(ev store.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopErr != nil {
		return
	}
	if !w.filter.Match(ev.Name) {
		// Coalesce with a queued skip: filtered watchers hold no memory
		// for the changes they do not see.
		if n := len(w.queue); n > 0 && w.queue[n-1].ev.Type == 0 && w.queue[n-1].ev.Revision == ev.Revision-1 {
			w.queue[n-1].ev.Revision = ev.Revision
			return
		}
		ev = store.Event{Revision: ev.Revision}
	}
	if len(w.queue) >= w.limit {
		if sent := w.sent.Load(); w.catchingUp && sent > w.sentAtDrop {
			w.needLog, w.queue, w.sentAtDrop = true, nil, sent
			return
		}
		w.stopLocked(fmt.Errorf("%s: watch: more than %d events pending at revision %d: %w", w.h.prefix, w.limit, ev.Revision, store.ErrWatchTooSlow))
		return
	}
	w.queue = append(w.queue, item{ev: ev, from: ev.Revision})
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) stop(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopLocked(err)
}

func (w *watcher) stopLocked(err error) {
	if w.stopErr == nil {
		w.stopErr, w.queue = err, nil
		close(w.done)
	}
}

func (w *watcher) stopCause() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopErr
}

func (w *watcher) run() {
	defer w.h.wg.Done()
	err := w.loop()
	w.h.remove(w)
	w.stop(err)
	w.errMu.Lock()
	w.err = err
	w.errMu.Unlock()
	close(w.out)
}

// ctx ends when the watcher's context ends or the watcher is stopped, so
// that a Source blocked in a read gives up.
func (w *watcher) readCtx() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(w.ctx)
	go func() {
		select {
		case <-w.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func (w *watcher) loop() error {
	if w.since == 0 {
		ctx, cancel := w.readCtx()
		rev, err := w.src.Snapshot(ctx, w.filter, func(p *corsdv1.Policy) error {
			return w.send(store.Event{Type: store.EventSnapshot, Revision: p.GetRevision(), Name: p.GetName(), Policy: p})
		})
		cancel()
		if err != nil {
			return w.cause(err)
		}
		if err := w.send(store.Event{Type: store.EventSynced, Revision: rev}); err != nil {
			return err
		}
	}
	for {
		w.mu.Lock()
		if !w.needLog {
			w.catchingUp = false
			w.mu.Unlock()
			break
		}
		// Whatever the queue lost is in the log by now; what comes after
		// this point reaches the queue.
		w.needLog, w.queue = false, nil
		w.mu.Unlock()
		if err := w.readLog(); err != nil {
			return w.cause(err)
		}
	}
	var batch []item
	for {
		select {
		case <-w.wake:
		case <-w.ctx.Done():
			return w.ctx.Err()
		case <-w.done:
			return w.stopCause()
		}
		w.mu.Lock()
		batch, w.queue = w.queue, batch[:0]
		w.mu.Unlock()
		for i := range batch {
			if err := w.sendLive(batch[i]); err != nil {
				return err
			}
			batch[i] = item{}
		}
		if err := w.progress(); err != nil {
			return err
		}
	}
}

// progress tells the reader of a filtered watch how far it got past the
// changes it left out.
func (w *watcher) progress() error {
	if !w.skipped {
		return nil
	}
	return w.send(store.Event{Type: store.EventProgress, Revision: w.last})
}

// cause prefers the reason the watcher was stopped or its context ended
// over the error of a read that was interrupted by it.
func (w *watcher) cause(err error) error {
	if stop := w.stopCause(); stop != nil {
		return stop
	}
	if ctxErr := w.ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return err
}

// sendLive sends a change unless it was sent already.
func (w *watcher) sendLive(it item) error {
	if it.ev.Revision <= w.last {
		return nil
	}
	if it.from > w.last+1 || (it.from <= w.last && it.ev.Type != 0) {
		// Cannot happen; if it does, make the caller resume from the log
		// rather than miss a change.
		return fmt.Errorf("%s: watch: revision %d follows %d: %w", w.h.prefix, it.from, w.last, store.ErrWatchTooSlow)
	}
	if it.ev.Type == 0 {
		w.last, w.skipped = it.ev.Revision, true
		return nil
	}
	return w.send(it.ev)
}

func (w *watcher) send(ev store.Event) error {
	select {
	case w.out <- ev:
		w.sent.Add(1)
		if ev.Type != store.EventSnapshot {
			w.last, w.skipped = ev.Revision, false
		}
		return nil
	case <-w.ctx.Done():
		return w.ctx.Err()
	case <-w.done:
		return w.stopCause()
	}
}

// readLog sends the logged changes after w.last.
func (w *watcher) readLog() error {
	for {
		ctx, cancel := w.readCtx()
		evs, err := w.src.Log(ctx, w.last, w.filter, LogPage)
		cancel()
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			return nil
		}
		for _, ev := range evs {
			if err := w.sendLive(item{ev: ev, from: ev.Revision}); err != nil {
				return err
			}
		}
		if err := w.progress(); err != nil {
			return err
		}
	}
}

// ChangeEvent converts a logged change into its watch event.
func ChangeEvent(c *corsdv1.Change) store.Event {
	ev := store.Event{Type: store.EventPut, Revision: c.GetRevision(), Name: c.GetName(), Policy: c.GetAfter()}
	if c.GetKind() == corsdv1.ChangeKind_CHANGE_KIND_DELETE {
		ev.Type, ev.Policy = store.EventDelete, nil
	}
	return ev
}

// ChangeName reads the name of an encoded corsd.v1.Change without
// decoding the rest (which can hold two large policies); "" when it has
// none or does not parse.
func ChangeName(data []byte) string {
	const nameField = 5 // corsd.v1.Change.name
	name := ""
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return ""
		}
		data = data[n:]
		if num == nameField && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(data)
			if m < 0 {
				return ""
			}
			name, data = string(v), data[m:] // the last occurrence wins
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, data)
		if m < 0 {
			return ""
		}
		data = data[m:]
	}
	return name
}
