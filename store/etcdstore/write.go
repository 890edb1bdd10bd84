package etcdstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// Deterministic, so equal messages are equal bytes.
var marshalOpts = proto.MarshalOptions{Deterministic: true}

func marshal(m proto.Message) ([]byte, error) {
	data, err := marshalOpts.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: encode %T: %w", m, err)
	}
	return data, nil
}

func decodePolicy(name string, data []byte) (*corsdv1.Policy, error) {
	p := new(corsdv1.Policy)
	if err := proto.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("etcdstore: policy %q does not decode: %w", name, err)
	}
	return p, nil
}

// current is what a write reads before it decides.
type current struct {
	rev       int64 // corsd's revision
	revMod    int64 // mod revision of its key
	compacted int64
	raw       []byte // the stored policy, nil when absent
	polMod    int64
	restoring bool
}

// plan is what a write decided: the policy before and after (nil when
// absent) and the kind of change.
type plan struct {
	before, after *corsdv1.Policy
	kind          corsdv1.ChangeKind
}

// readCurrent reads, at one etcd revision, what a write to name depends on.
func (s *Store) readCurrent(ctx context.Context, name string) (current, error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.key(keyRevision)),
		clientv3.OpGet(s.key(keyCompacted)),
		clientv3.OpGet(s.policyKey(name)),
		clientv3.OpGet(s.key(keyRestoring), clientv3.WithCountOnly()),
	).Commit()
	if err != nil {
		return current{}, err
	}
	var cur current
	revKVs := resp.Responses[0].GetResponseRange().GetKvs()
	if cur.rev, err = intValue(revKVs, keyRevision); err != nil {
		return current{}, err
	}
	cur.revMod = revKVs[0].ModRevision
	if cur.compacted, err = intValue(resp.Responses[1].GetResponseRange().GetKvs(), keyCompacted); err != nil {
		return current{}, err
	}
	if kvs := resp.Responses[2].GetResponseRange().GetKvs(); len(kvs) == 1 {
		cur.raw, cur.polMod = kvs[0].Value, kvs[0].ModRevision
	}
	cur.restoring = resp.Responses[3].GetResponseRange().GetCount() > 0
	return cur, nil
}

// write runs one write: read, decide, then commit with compare-and-swap,
// again from the read when another replica wrote meanwhile. decide's
// errors are returned as is. It returns the policy after the write (nil for
// a delete) and the write's revision.
func (s *Store) write(ctx context.Context, op, name string, decide func(cur current, rev int64, now time.Time) (plan, error)) (*corsdv1.Policy, int64, error) {
	if err := s.start(ctx, op); err != nil {
		return nil, 0, err
	}
	if len(name) > maxNameLen {
		return nil, 0, fmt.Errorf("etcdstore: %s: policy name longer than %d bytes: %w", op, maxNameLen, store.ErrInvalidArgument)
	}
	actor := store.Actor(ctx)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	for attempt := range maxAttempts {
		if attempt > 0 {
			// Lost to another replica: let it finish before reading again.
			select {
			case <-ctx.Done():
				return nil, 0, fmt.Errorf("etcdstore: %s: %w", op, ctx.Err())
			case <-time.After(time.Duration(rand.Int64N(int64(attempt)*int64(time.Millisecond) + 1))): //nolint:gosec // G404: jitter, not a secret
			}
		}
		after, rev, done, err := s.tryWrite(ctx, op, name, actor, decide)
		if done || err != nil {
			return after, rev, err
		}
	}
	return nil, 0, fmt.Errorf("etcdstore: %s %q: lost to concurrent writes by other replicas %d times: %w", op, name, maxAttempts, store.ErrConflict)
}

// tryWrite makes one attempt; done is false when the compare-and-swap
// failed and the write must be tried again.
func (s *Store) tryWrite(ctx context.Context, op, name, actor string, decide func(cur current, rev int64, now time.Time) (plan, error)) (*corsdv1.Policy, int64, bool, error) {
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	cur, err := s.readCurrent(rctx, name)
	if err != nil {
		return nil, 0, false, s.wrap(op, rctx, err)
	}
	if cur.restoring {
		return nil, 0, false, fmt.Errorf("etcdstore: %s: a restore into this store is running: %w", op, store.ErrUnavailable)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, false, fmt.Errorf("etcdstore: %s: %w", op, err)
	}
	rev, now := cur.rev+1, s.now()
	pl, err := decide(cur, rev, now)
	if err != nil {
		return nil, 0, false, err
	}

	// The host index entries this write reads or writes.
	var oldHosts, newHosts []string
	if pl.before != nil {
		oldHosts = pl.before.GetHosts()
	}
	if pl.after != nil {
		newHosts = pl.after.GetHosts()
	}
	hostKeys := map[string]bool{}
	for _, h := range oldHosts {
		hostKeys[s.hostKey(h)] = true
	}
	for _, h := range newHosts {
		hostKeys[s.hostKey(h)] = true
	}
	owners := map[string]string{}
	mods := map[string]int64{}
	if len(hostKeys) > 0 {
		var gets []clientv3.Op
		var keys []string
		for k := range hostKeys {
			keys = append(keys, k)
			gets = append(gets, clientv3.OpGet(k))
		}
		resp, err := s.cli.Txn(rctx).Then(gets...).Commit()
		if err != nil {
			return nil, 0, false, s.wrap(op, rctx, err)
		}
		for i, k := range keys {
			if kvs := resp.Responses[i].GetResponseRange().GetKvs(); len(kvs) == 1 {
				owners[k], mods[k] = string(kvs[0].Value), kvs[0].ModRevision
			}
		}
	}
	for i, h := range newHosts {
		if owner, ok := owners[s.hostKey(h)]; ok && owner != name {
			return nil, 0, false, fmt.Errorf("etcdstore: policy %q: %w", name, &store.HostConflictError{Index: i, Host: h, Owner: owner})
		}
	}

	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(s.key(keyRevision)), "=", cur.revMod),
		clientv3.Compare(clientv3.ModRevision(s.policyKey(name)), "=", cur.polMod),
		clientv3.Compare(clientv3.CreateRevision(s.key(keyRestoring)), "=", 0),
		clientv3.Compare(clientv3.CreateRevision(s.changeKey(rev)), "=", 0),
	}
	for k := range hostKeys {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", mods[k]))
	}
	change := &corsdv1.Change{Revision: rev, ChangeTime: timestamppb.New(now), Actor: actor, Kind: pl.kind, Name: name, Before: pl.before, After: pl.after}
	changeData, err := marshal(change)
	if err != nil {
		return nil, 0, false, err
	}
	var ops []clientv3.Op
	if pl.after != nil {
		data, err := marshal(pl.after)
		if err != nil {
			return nil, 0, false, err
		}
		ops = append(ops, clientv3.OpPut(s.policyKey(name), string(data)))
	} else {
		ops = append(ops, clientv3.OpDelete(s.policyKey(name)))
	}
	keep := map[string]bool{}
	for _, h := range newHosts {
		keep[s.hostKey(h)] = true
	}
	for k := range hostKeys {
		switch {
		case keep[k]:
			if owners[k] != name {
				ops = append(ops, clientv3.OpPut(k, name))
			}
		case owners[k] == name:
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	ops = append(ops,
		clientv3.OpPut(s.key(keyRevision), strconv.FormatInt(rev, 10)),
		clientv3.OpPut(s.changeKey(rev), string(changeData)),
	)
	if m := int64(s.opts.maxChanges); m > 0 && rev-cur.compacted > m {
		upTo := rev - m
		ops = append(ops,
			clientv3.OpDelete(s.changeKey(cur.compacted+1), clientv3.WithRange(s.changeKey(upTo+1))),
			clientv3.OpPut(s.key(keyCompacted), strconv.FormatInt(upTo, 10)),
		)
	}
	resp, err := s.cli.Txn(rctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return nil, 0, false, s.wrap(op, rctx, err)
	}
	if !resp.Succeeded {
		return nil, 0, false, nil
	}
	if pl.after != nil {
		return proto.Clone(pl.after).(*corsdv1.Policy), rev, true, nil
	}
	return nil, rev, true, nil
}

// Create stores p under p.Name; see store.Store.
func (s *Store) Create(ctx context.Context, p *corsdv1.Policy) (*corsdv1.Policy, error) {
	if p.GetName() == "" {
		return nil, fmt.Errorf("etcdstore: create: policy without a name: %w", store.ErrInvalidArgument)
	}
	name := p.GetName()
	after, _, err := s.write(ctx, "create", name, func(cur current, rev int64, now time.Time) (plan, error) {
		if cur.raw != nil {
			return plan{}, fmt.Errorf("etcdstore: policy %q: %w", name, store.ErrExists)
		}
		np := proto.Clone(p).(*corsdv1.Policy)
		stamp(np, rev, timestamppb.New(now), now)
		return plan{after: np, kind: corsdv1.ChangeKind_CHANGE_KIND_CREATE}, nil
	})
	return after, err
}

// Update applies mutate to a copy of the stored policy when pre holds; see
// store.Store.
func (s *Store) Update(ctx context.Context, name string, pre store.Precondition, mutate store.MutateFunc) (*corsdv1.Policy, error) {
	if mutate == nil {
		return nil, fmt.Errorf("etcdstore: update: nil mutate function: %w", store.ErrInvalidArgument)
	}
	after, _, err := s.write(ctx, "update", name, func(cur current, rev int64, now time.Time) (plan, error) {
		before, err := existing(name, cur, pre)
		if err != nil {
			return plan{}, err
		}
		np := proto.Clone(before).(*corsdv1.Policy)
		if err := mutate(np); err != nil {
			return plan{}, err
		}
		np.Name = name
		stamp(np, rev, before.GetCreateTime(), now)
		return plan{before: before, after: np, kind: corsdv1.ChangeKind_CHANGE_KIND_UPDATE}, nil
	})
	return after, err
}

// Delete removes a policy when pre holds; see store.Store.
func (s *Store) Delete(ctx context.Context, name string, pre store.Precondition) (int64, error) {
	_, rev, err := s.write(ctx, "delete", name, func(cur current, _ int64, _ time.Time) (plan, error) {
		before, err := existing(name, cur, pre)
		if err != nil {
			return plan{}, err
		}
		return plan{before: before, kind: corsdv1.ChangeKind_CHANGE_KIND_DELETE}, nil
	})
	return rev, err
}

// existing decodes the stored policy and checks pre against it.
func existing(name string, cur current, pre store.Precondition) (*corsdv1.Policy, error) {
	if cur.raw == nil {
		return nil, fmt.Errorf("etcdstore: policy %q: %w", name, store.ErrNotFound)
	}
	p, err := decodePolicy(name, cur.raw)
	if err != nil {
		return nil, err
	}
	if pre.Etag != "" && pre.Etag != p.GetEtag() {
		return nil, fmt.Errorf("etcdstore: policy %q: etag %q is stale (current %q): %w", name, pre.Etag, p.GetEtag(), store.ErrConflict)
	}
	if pre.Revision != 0 && pre.Revision != p.GetRevision() {
		return nil, fmt.Errorf("etcdstore: policy %q: revision %d is stale (current %d): %w", name, pre.Revision, p.GetRevision(), store.ErrConflict)
	}
	return p, nil
}

// stamp sets the output-only fields of a policy written at rev.
func stamp(p *corsdv1.Policy, rev int64, created *timestamppb.Timestamp, now time.Time) {
	p.Revision = rev
	p.Etag = strconv.FormatInt(rev, 10)
	p.CreateTime = created
	p.UpdateTime = timestamppb.New(now)
}
