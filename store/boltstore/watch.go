package boltstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// logPage is how many changes a catching-up watcher reads per transaction.
const logPage = 256

// hub hands committed changes to watchers in revision order.
//
// bbolt runs commit handlers after it releases the writer lock, so the
// handlers of two transactions can run in either order; hub holds a change
// back until every earlier revision has been handed out.
type hub struct {
	mu        sync.Mutex
	closed    bool
	published int64 // every revision ≤ published was handed out
	pending   map[int64]store.Event
	watchers  map[*watcher]struct{}
}

func (h *hub) init(rev int64) {
	h.published = rev
	h.pending = make(map[int64]store.Event)
	h.watchers = make(map[*watcher]struct{})
}

// commit is called once per committed revision, after the commit.
func (h *hub) commit(ev store.Event) {
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

// add registers w; from then on w receives every change handed out. It
// counts w in wg under the hub lock, so that Close (closeAll, then Wait)
// never races with the Add.
func (h *hub) add(w *watcher, wg *sync.WaitGroup) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return fmt.Errorf("boltstore: watch: %w", store.ErrClosed)
	}
	h.watchers[w] = struct{}{}
	wg.Add(1)
	return nil
}

func (h *hub) remove(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.watchers, w)
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for w := range h.watchers {
		w.stop(fmt.Errorf("boltstore: watch: %w", store.ErrClosed))
	}
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
	ctx   context.Context
	s     *Store
	out   chan store.Event
	limit int
	wake  chan struct{} // a push happened
	done  chan struct{} // closed by stop

	mu         sync.Mutex
	queue      []store.Event
	catchingUp bool
	needLog    bool  // the change log holds events the queue lost
	sentAtDrop int64 // sent when the queue last overflowed
	stopErr    error

	sent atomic.Int64 // events taken by the reader

	// Owned by the goroutine.
	last    int64 // revision of the last event sent
	initial []store.Event

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
	if len(w.queue) >= w.limit {
		if sent := w.sent.Load(); w.catchingUp && sent > w.sentAtDrop {
			w.needLog, w.queue, w.sentAtDrop = true, nil, sent
			return
		}
		w.stopLocked(fmt.Errorf("boltstore: watch: more than %d events pending at revision %d: %w", w.limit, ev.Revision, store.ErrWatchTooSlow))
		return
	}
	w.queue = append(w.queue, ev)
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

// Watch subscribes to the policies; see store.Store. Events of type
// EventSnapshot and EventPut carry a policy shared by every watcher: treat
// it as read-only.
func (s *Store) Watch(ctx context.Context, since int64) (store.Watch, error) {
	if since < 0 {
		return nil, fmt.Errorf("boltstore: watch: negative revision %d: %w", since, store.ErrInvalidArgument)
	}
	if err := s.acquire(ctx, "watch"); err != nil {
		return nil, err
	}
	defer s.release()

	w := &watcher{
		ctx:        ctx,
		s:          s,
		out:        make(chan store.Event),
		limit:      s.opts.watchBuffer,
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		catchingUp: true,
		needLog:    since > 0,
		last:       since,
	}
	// Register before reading. A change handed out before the registration
	// was committed before the read below (or the watcher's reads of the
	// log) began, so the read sees it; one handed out after it reaches the
	// queue. What both saw is dropped by revision: no gap, no duplicate.
	if err := s.hub.add(w, &s.watchers); err != nil {
		return nil, err
	}
	var err error
	if since == 0 {
		err = s.view("watch", func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketPolicies).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				p, err := decodePolicy(string(k), v)
				if errors.Is(err, store.ErrDataLoss) {
					// One damaged record must not stop every policy from
					// serving: leave it out and count it (Get names it).
					s.damaged.Add(1)
					continue
				}
				if err != nil {
					return err
				}
				w.initial = append(w.initial, store.Event{Type: store.EventSnapshot, Revision: p.GetRevision(), Name: p.GetName(), Policy: p})
			}
			w.initial = append(w.initial, store.Event{Type: store.EventSynced, Revision: metaInt(tx, keyRevision)})
			return nil
		})
	} else {
		err = s.view("watch", func(tx *bolt.Tx) error {
			if compacted := metaInt(tx, keyCompacted); since < compacted {
				return compactedError(since, compacted)
			}
			return nil
		})
	}
	if err != nil {
		s.hub.remove(w)
		s.watchers.Done()
		return nil, err
	}
	go w.run()
	return w, nil
}

func (w *watcher) run() {
	defer w.s.watchers.Done()
	err := w.loop()
	w.s.hub.remove(w)
	w.stop(err)
	w.errMu.Lock()
	w.err = err
	w.errMu.Unlock()
	close(w.out)
}

func (w *watcher) loop() error {
	initial := w.initial
	w.initial = nil
	for i := range initial {
		if err := w.send(initial[i]); err != nil {
			return err
		}
		initial[i] = store.Event{} // let the snapshot go as it is sent
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
			return err
		}
	}
	var batch []store.Event
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
			batch[i] = store.Event{}
		}
	}
}

// sendLive sends a change unless it was sent already.
func (w *watcher) sendLive(ev store.Event) error {
	if ev.Revision <= w.last {
		return nil
	}
	if ev.Revision != w.last+1 {
		// Cannot happen; if it does, make the caller resume from the log
		// rather than miss a change.
		return fmt.Errorf("boltstore: watch: revision %d follows %d: %w", ev.Revision, w.last, store.ErrWatchTooSlow)
	}
	return w.send(ev)
}

func (w *watcher) send(ev store.Event) error {
	select {
	case w.out <- ev:
		w.sent.Add(1)
		if ev.Type != store.EventSnapshot {
			w.last = ev.Revision
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
		evs, err := w.s.readLog(w.last, logPage)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := w.sendLive(ev); err != nil {
				return err
			}
		}
		if len(evs) < logPage {
			return nil
		}
	}
}

// readLog returns up to n logged changes after revision after, as events.
func (s *Store) readLog(after int64, n int) ([]store.Event, error) {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("boltstore: watch: %w", store.ErrClosed)
	}
	var evs []store.Event
	err := s.view("watch", func(tx *bolt.Tx) error {
		if compacted := metaInt(tx, keyCompacted); after < compacted {
			return fmt.Errorf("boltstore: watch: the change log was compacted past revision %d while the watcher caught up: %w", after, store.ErrWatchTooSlow)
		}
		c := tx.Bucket(bucketChanges).Cursor()
		for k, v := c.Seek(revKey(after + 1)); k != nil && len(evs) < n; k, v = c.Next() {
			ch, err := decodeChange(k, v)
			if err != nil {
				return err
			}
			evs = append(evs, changeEvent(ch))
		}
		return nil
	})
	return evs, err
}

func changeEvent(c *corsdv1.Change) store.Event {
	ev := store.Event{Type: store.EventPut, Revision: c.GetRevision(), Name: c.GetName(), Policy: c.GetAfter()}
	if c.GetKind() == corsdv1.ChangeKind_CHANGE_KIND_DELETE {
		ev.Type, ev.Policy = store.EventDelete, nil
	}
	return ev
}
