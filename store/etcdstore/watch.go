package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
	"github.com/corsd/corsd/store/internal/feed"
)

const (
	// snapshotPage is how many policies a watcher's initial state reads per
	// etcd call: a stalled watcher holds at most this many policies.
	snapshotPage = 4
	// logPage is how many changes a catching-up watcher reads per call.
	logPage = 32
	// feedRetryMin and feedRetryMax bound the pause before the feeder
	// watches etcd again after a failure.
	feedRetryMin = 50 * time.Millisecond
	feedRetryMax = 2 * time.Second
)

// Watch subscribes to the policies; see store.Store. Events of type
// EventSnapshot and EventPut may carry a policy shared by every watcher:
// treat it as read-only. The initial state is read at one etcd revision in
// pages; should etcd's history be compacted past it before the state is
// read through, the watch ends with store.ErrWatchTooSlow and the caller
// starts again.
func (s *Store) Watch(ctx context.Context, since int64, names ...string) (store.Watch, error) {
	if since < 0 {
		return nil, fmt.Errorf("etcdstore: watch: negative revision %d: %w", since, store.ErrInvalidArgument)
	}
	if err := s.start(ctx, "watch"); err != nil {
		return nil, err
	}
	return s.hub.Watch(ctx, source{s}, since, names, s.opts.watchBuffer)
}

// source reads the snapshot and the change log for the watchers.
type source struct{ s *Store }

var _ feed.Source = source{}

func (src source) Snapshot(ctx context.Context, f feed.Filter, emit func(*corsdv1.Policy) error) (int64, error) {
	s := src.s
	rctx, cancel := s.reqCtx(ctx)
	resp, err := s.cli.Get(rctx, s.key(keyRevision))
	cancel()
	if err != nil {
		return 0, s.snapErr(rctx, err)
	}
	rev, err := intValue(resp.Kvs, keyRevision)
	if err != nil {
		return 0, err
	}
	at := clientv3.WithRev(resp.Header.GetRevision())
	emitKV := func(kv *mvccpb.KeyValue) error {
		name := strings.TrimPrefix(string(kv.Key), s.prefix+dirPolicies)
		p, err := decodePolicy(name, kv.Value)
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
			rctx, cancel := s.reqCtx(ctx)
			resp, err := s.cli.Get(rctx, s.policyKey(n), at)
			cancel()
			if err != nil {
				return 0, s.snapErr(rctx, err)
			}
			for _, kv := range resp.Kvs {
				if err := emitKV(kv); err != nil {
					return 0, err
				}
			}
		}
		return rev, nil
	}
	from, end := s.prefix+dirPolicies, clientv3.GetPrefixRangeEnd(s.prefix+dirPolicies)
	for {
		rctx, cancel := s.reqCtx(ctx)
		resp, err := s.cli.Get(rctx, from, clientv3.WithRange(end), clientv3.WithLimit(snapshotPage), at)
		cancel()
		if err != nil {
			return 0, s.snapErr(rctx, err)
		}
		for _, kv := range resp.Kvs {
			if err := emitKV(kv); err != nil {
				return 0, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// snapErr maps a failed snapshot read: history compacted under it means
// the watcher must start again.
func (s *Store) snapErr(ctx context.Context, err error) error {
	if errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("etcdstore: watch: etcd's history was compacted while the initial state was read: %w", store.ErrWatchTooSlow)
	}
	return s.wrap("watch", ctx, err)
}

func (src source) Log(ctx context.Context, after int64, f feed.Filter, n int) ([]store.Event, error) {
	s := src.s
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	compacted, kvs, _, err := s.readLog(rctx, after, min(n, logPage))
	if err != nil {
		return nil, s.wrap("watch", rctx, err)
	}
	if after < compacted {
		return nil, fmt.Errorf("etcdstore: watch: the change log was compacted past revision %d while the watcher caught up: %w", after, store.ErrWatchTooSlow)
	}
	evs := make([]store.Event, 0, len(kvs))
	for _, kv := range kvs {
		if f != nil && !f.Match(feed.ChangeName(kv.Value)) {
			evs = append(evs, store.Event{Revision: changeRev(kv.Key)})
			continue
		}
		c, err := decodeChange(kv.Key, kv.Value)
		if err != nil {
			return nil, err
		}
		evs = append(evs, feed.ChangeEvent(c))
	}
	return evs, nil
}

func (src source) CheckSince(ctx context.Context, since int64) error {
	s := src.s
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(rctx, s.key(keyCompacted))
	if err != nil {
		return s.wrap("watch", rctx, err)
	}
	compacted, err := intValue(resp.Kvs, keyCompacted)
	if err != nil {
		return err
	}
	if since < compacted {
		return fmt.Errorf("etcdstore: changes after revision %d: the log starts after revision %d: %w", since, compacted, store.ErrCompacted)
	}
	return nil
}

// feed hands every committed change, whichever replica wrote it, to the
// hub in revision order. It follows corsd's change-log keys with an etcd
// watch from etcdRev+1; whenever that watch breaks (etcd compacted its
// history, a member died, the cluster lost its leader) it reads the
// changes it missed from the log keys themselves and watches again from
// there, so that etcd's compaction never loses a change. Changes pruned by
// retention before the feeder saw them cut the watchers off, which then
// resume from the log (and resync when it no longer holds their revision).
func (s *Store) feed(ctx context.Context, etcdRev int64) {
	defer close(s.fed)
	delay := feedRetryMin
	broken := false
	for ctx.Err() == nil {
		from, err := s.catchUp(ctx, etcdRev)
		if err == nil {
			if broken {
				s.opts.log.Info("etcd watch restored; caught up from the change log", "prefix", s.prefix, "revision", s.hub.Published())
				broken = false
			}
			etcdRev, err = s.follow(ctx, from)
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			delay = feedRetryMin
			continue
		}
		if !broken {
			// Decisions go on from the snapshot; they just stop changing.
			s.opts.log.Warn("etcd watch broken; this replica no longer sees writes until it is restored", "prefix", s.prefix, "revision", s.hub.Published(), "err", err)
			broken = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, feedRetryMax)
	}
}

// catchUp hands the hub the logged changes after the last one it has, and
// returns the etcd revision to watch from. etcdRev is a revision at which
// every change the hub has was already committed.
func (s *Store) catchUp(ctx context.Context, etcdRev int64) (int64, error) {
	for {
		after := s.hub.Published()
		rctx, cancel := s.reqCtx(ctx)
		resp, err := s.cli.Txn(rctx).Then(
			clientv3.OpGet(s.key(keyCompacted)),
			clientv3.OpGet(s.changeKey(after+1), clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.prefix+dirChanges)), clientv3.WithLimit(logPage)),
		).Commit()
		cancel()
		if err != nil {
			return etcdRev, err
		}
		compacted, err := intValue(resp.Responses[0].GetResponseRange().GetKvs(), keyCompacted)
		if err != nil {
			return etcdRev, err
		}
		if after < compacted {
			s.hub.Skip(compacted, fmt.Errorf("etcdstore: watch: the change log was pruned past revision %d before this replica read it: %w", after, store.ErrWatchTooSlow))
		}
		r := resp.Responses[1].GetResponseRange()
		for _, kv := range r.GetKvs() {
			if err := s.publish(kv); err != nil {
				return etcdRev, err
			}
		}
		if !r.GetMore() {
			return resp.Header.GetRevision(), nil
		}
	}
}

// follow watches the change-log keys from etcd revision etcdRev+1 until the
// watch breaks, and returns the etcd revision up to which it handed out
// every change, with the error that broke the watch.
func (s *Store) follow(ctx context.Context, etcdRev int64) (int64, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, s.prefix+dirChanges, clientv3.WithPrefix(), clientv3.WithRev(etcdRev+1))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return etcdRev, err
		}
		for _, ev := range wr.Events {
			if ev.Type != mvccpb.PUT {
				continue // retention pruning
			}
			if rev := changeRev(ev.Kv.Key); rev != s.hub.Published()+1 && rev > s.hub.Published() {
				// A change the watch did not deliver (restored, or pruned
				// unseen): read the log, then watch again.
				return etcdRev, fmt.Errorf("etcdstore: change %d follows %d", rev, s.hub.Published())
			}
			if err := s.publish(ev.Kv); err != nil {
				return etcdRev, err
			}
		}
		etcdRev = wr.Header.GetRevision()
	}
	return etcdRev, errors.New("etcdstore: the watch of etcd ended")
}

// publish hands one logged change to the hub.
func (s *Store) publish(kv *mvccpb.KeyValue) error {
	c, err := decodeChange(kv.Key, kv.Value)
	if err != nil {
		return err
	}
	if c.GetRevision() > s.hub.Published()+1 {
		// Changes before it are not in the log: they were pruned unseen,
		// or a restore put the log in place.
		s.hub.Skip(c.GetRevision()-1, fmt.Errorf("etcdstore: watch: changes up to %d were pruned or restored before this replica read them: %w", c.GetRevision()-1, store.ErrWatchTooSlow))
	}
	s.hub.Commit(feed.ChangeEvent(c))
	return nil
}
