package boltstore

import (
	"context"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
	"github.com/corsd/corsd/store/internal/feed"
)

// logBytes bounds the encoded changes one Log page holds, so that a
// catching-up watcher holds at most about this much whatever the policies'
// size.
const logBytes = 4 << 20

// Watch subscribes to the policies; see store.Store. Events of type
// EventSnapshot and EventPut may carry a policy shared by every watcher:
// treat it as read-only. The initial state is read from one read
// transaction, one policy at a time as the reader takes them; while it is
// open, a write that must grow the file past the reserved mapping waits.
func (s *Store) Watch(ctx context.Context, since int64, names ...string) (store.Watch, error) {
	if since < 0 {
		return nil, fmt.Errorf("boltstore: watch: negative revision %d: %w", since, store.ErrInvalidArgument)
	}
	if err := s.acquire(ctx, "watch"); err != nil {
		return nil, err
	}
	defer s.release()
	return s.hub.Watch(ctx, source{s}, since, names, s.opts.watchBuffer)
}

// source reads the snapshot and the change log for the watchers.
type source struct{ s *Store }

var _ feed.Source = source{}

// readLock holds closeMu shared for a watcher's read, which Close
// interrupts by stopping the watcher before it takes the lock.
func (s *Store) readLock() error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return fmt.Errorf("boltstore: watch: %w", store.ErrClosed)
	}
	return nil
}

func (src source) Snapshot(ctx context.Context, f feed.Filter, emit func(*corsdv1.Policy) error) (int64, error) {
	s := src.s
	if err := s.readLock(); err != nil {
		return 0, err
	}
	defer s.closeMu.RUnlock()
	var rev int64
	err := s.view("watch", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPolicies)
		one := func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			p, err := decodePolicy(string(k), v)
			if err != nil {
				return err
			}
			return emit(p)
		}
		if f != nil {
			// Only the named policies are read and decoded.
			names := make([]string, 0, len(f))
			for n := range f {
				names = append(names, n)
			}
			slices.Sort(names)
			for _, n := range names {
				if v := b.Get([]byte(n)); v != nil {
					if err := one([]byte(n), v); err != nil {
						return err
					}
				}
			}
		} else {
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if err := one(k, v); err != nil {
					return err
				}
			}
		}
		rev = metaInt(tx, keyRevision)
		return nil
	})
	return rev, err
}

func (src source) Log(ctx context.Context, after int64, f feed.Filter, n int) ([]store.Event, error) {
	s := src.s
	if err := s.readLock(); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	var evs []store.Event
	err := s.view("watch", func(tx *bolt.Tx) error {
		if compacted := metaInt(tx, keyCompacted); after < compacted {
			return fmt.Errorf("boltstore: watch: the change log was compacted past revision %d while the watcher caught up: %w", after, store.ErrWatchTooSlow)
		}
		size := 0
		c := tx.Bucket(bucketChanges).Cursor()
		for k, v := c.Seek(revKey(after + 1)); k != nil && len(evs) < n && size < logBytes; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			if f != nil && !f.Match(peekChangeName(v)) {
				evs = append(evs, store.Event{Revision: keyRev(k)})
				continue
			}
			size += len(v)
			ch, err := decodeChange(k, v)
			if err != nil {
				return err
			}
			evs = append(evs, feed.ChangeEvent(ch))
		}
		return nil
	})
	return evs, err
}

func (src source) CheckSince(_ context.Context, since int64) error {
	return src.s.view("watch", func(tx *bolt.Tx) error {
		if compacted := metaInt(tx, keyCompacted); since < compacted {
			return compactedError(since, compacted)
		}
		return nil
	})
}
