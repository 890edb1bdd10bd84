package boltstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// Create stores p under p.Name and returns the stored copy, with revision,
// etag, create_time and update_time set. p itself is not modified.
func (s *Store) Create(ctx context.Context, p *corsdv1.Policy) (*corsdv1.Policy, error) {
	if err := checkName(p.GetName()); err != nil {
		return nil, fmt.Errorf("boltstore: create: %w", err)
	}
	name, actor := p.GetName(), store.Actor(ctx)
	var np *corsdv1.Policy
	err := s.update(ctx, "create", write{
		check: func(tx *bolt.Tx) error {
			if tx.Bucket(bucketPolicies).Get([]byte(name)) != nil {
				return fmt.Errorf("boltstore: policy %q: %w", name, store.ErrExists)
			}
			return checkHosts(tx, p)
		},
		apply: func(tx *bolt.Tx) error {
			now, rev := s.now(), metaInt(tx, keyRevision)+1
			np = proto.Clone(p).(*corsdv1.Policy)
			stamp(np, rev, timestamppb.New(now), now)
			after, err := putPolicy(tx.Bucket(bucketPolicies), np)
			if err != nil {
				return err
			}
			if err := moveHosts(tx, name, nil, np.GetHosts()); err != nil {
				return err
			}
			return s.record(tx, change{rev: rev, at: now, actor: actor, kind: corsdv1.ChangeKind_CHANGE_KIND_CREATE, name: name, after: after, policy: np})
		},
	})
	if err != nil {
		return nil, err
	}
	return np, nil
}

// Update applies mutate to a copy of the stored policy when pre holds. The
// name and the output-only fields are restored after mutate; create_time is
// kept.
func (s *Store) Update(ctx context.Context, name string, pre store.Precondition, mutate store.MutateFunc) (*corsdv1.Policy, error) {
	if mutate == nil {
		return nil, fmt.Errorf("boltstore: update: nil mutate function: %w", store.ErrInvalidArgument)
	}
	actor := store.Actor(ctx)
	var (
		np       *corsdv1.Policy
		before   []byte
		oldHosts []string
		created  *timestamppb.Timestamp
	)
	err := s.update(ctx, "update", write{
		check: func(tx *bolt.Tx) error {
			raw := tx.Bucket(bucketPolicies).Get([]byte(name))
			if raw == nil {
				return fmt.Errorf("boltstore: policy %q: %w", name, store.ErrNotFound)
			}
			// Decoded afresh on every run, so mutate always gets its own copy.
			var err error
			if np, err = decodePolicy(name, raw); err != nil {
				return err
			}
			if err := checkPrecondition(np, pre); err != nil {
				return err
			}
			created = proto.Clone(np.GetCreateTime()).(*timestamppb.Timestamp)
			before = bytes.Clone(raw) // the Put below may reuse raw's memory
			oldHosts = slices.Clone(np.GetHosts())
			if err := mutate(np); err != nil {
				return err // as is, so the caller sees its own
			}
			np.Name = name
			return checkHosts(tx, np)
		},
		apply: func(tx *bolt.Tx) error {
			now, rev := s.now(), metaInt(tx, keyRevision)+1
			np.Name = name
			stamp(np, rev, created, now)
			after, err := putPolicy(tx.Bucket(bucketPolicies), np)
			if err != nil {
				return err
			}
			if err := moveHosts(tx, name, oldHosts, np.GetHosts()); err != nil {
				return err
			}
			return s.record(tx, change{rev: rev, at: now, actor: actor, kind: corsdv1.ChangeKind_CHANGE_KIND_UPDATE, name: name, before: before, after: after, policy: np})
		},
	})
	if err != nil {
		return nil, err
	}
	return np, nil
}

// Delete removes a policy when pre holds and returns the delete's revision.
func (s *Store) Delete(ctx context.Context, name string, pre store.Precondition) (int64, error) {
	actor := store.Actor(ctx)
	var (
		before   []byte
		oldHosts []string
		rev      int64
	)
	err := s.update(ctx, "delete", write{
		check: func(tx *bolt.Tx) error {
			raw := tx.Bucket(bucketPolicies).Get([]byte(name))
			if raw == nil {
				return fmt.Errorf("boltstore: policy %q: %w", name, store.ErrNotFound)
			}
			cur, err := decodePolicy(name, raw)
			if err != nil {
				return err
			}
			if err := checkPrecondition(cur, pre); err != nil {
				return err
			}
			before = bytes.Clone(raw) // the Delete below may reuse raw's memory
			oldHosts = cur.GetHosts()
			return nil
		},
		apply: func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketPolicies).Delete([]byte(name)); err != nil {
				return fmt.Errorf("boltstore: delete policy %q: %w", name, err)
			}
			if err := moveHosts(tx, name, oldHosts, nil); err != nil {
				return err
			}
			rev = metaInt(tx, keyRevision) + 1
			return s.record(tx, change{rev: rev, at: s.now(), actor: actor, kind: corsdv1.ChangeKind_CHANGE_KIND_DELETE, name: name, before: before})
		},
	})
	if err != nil {
		return 0, err
	}
	return rev, nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("policy without a name: %w", store.ErrInvalidArgument)
	case len(name) > maxNameLen:
		return fmt.Errorf("policy name longer than %d bytes: %w", maxNameLen, store.ErrInvalidArgument)
	}
	return nil
}

func checkPrecondition(cur *corsdv1.Policy, pre store.Precondition) error {
	if pre.Etag != "" && pre.Etag != cur.GetEtag() {
		return fmt.Errorf("boltstore: policy %q: etag %q is stale (current %q): %w", cur.GetName(), pre.Etag, cur.GetEtag(), store.ErrConflict)
	}
	if pre.Revision != 0 && pre.Revision != cur.GetRevision() {
		return fmt.Errorf("boltstore: policy %q: revision %d is stale (current %d): %w", cur.GetName(), pre.Revision, cur.GetRevision(), store.ErrConflict)
	}
	return nil
}

// stamp sets the output-only fields of a policy written at rev.
func stamp(p *corsdv1.Policy, rev int64, created *timestamppb.Timestamp, now time.Time) {
	p.Revision = rev
	p.Etag = etag(rev)
	p.CreateTime = created
	p.UpdateTime = timestamppb.New(now)
}

// etag derives the opaque etag of a policy from the revision that wrote it:
// unique per write, so any change makes an old etag stale.
func etag(rev int64) string { return strconv.FormatInt(rev, 10) }

// change is one write, as record needs it: before and after are the
// encoded policies (nil when absent), policy the decoded after.
type change struct {
	rev           int64
	at            time.Time
	actor         string
	kind          corsdv1.ChangeKind
	name          string
	before, after []byte
	policy        *corsdv1.Policy
}

// record advances the revision, appends the change, applies retention and
// arranges for watchers to hear of the change once the transaction commits.
func (s *Store) record(tx *bolt.Tx, c change) error {
	if err := tx.Bucket(bucketMeta).Put(keyRevision, i64(c.rev)); err != nil {
		return fmt.Errorf("boltstore: write revision: %w", err)
	}
	data, err := encodeChange(c)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketChanges).Put(revKey(c.rev), data); err != nil {
		return fmt.Errorf("boltstore: write change %d: %w", c.rev, err)
	}
	if err := s.compact(tx, c.rev, c.at); err != nil {
		return err
	}
	ev := store.Event{Type: store.EventPut, Revision: c.rev, Name: c.name}
	if c.policy == nil {
		ev.Type = store.EventDelete
	} else {
		// Watchers share the event; the caller gets its own copy.
		ev.Policy = proto.Clone(c.policy).(*corsdv1.Policy)
	}
	tx.OnCommit(func() { s.hub.Commit(ev) })
	return nil
}

// compact deletes the changes beyond the retention bounds, oldest first,
// always keeping the change at rev, and remembers how far it went.
func (s *Store) compact(tx *bolt.Tx, rev int64, now time.Time) error {
	maxChanges, maxAge := int64(s.opts.maxChanges), s.opts.maxAge
	if maxChanges == 0 && maxAge == 0 {
		return nil
	}
	changes := tx.Bucket(bucketChanges)
	compacted := metaInt(tx, keyCompacted)
	upTo := compacted
	if maxChanges > 0 && rev-upTo > maxChanges {
		upTo = rev - maxChanges
	}
	if maxAge > 0 {
		cutoff := now.Add(-maxAge)
		c := changes.Cursor()
		for k, v := c.Seek(revKey(upTo + 1)); k != nil; k, v = c.Next() {
			r := keyRev(k)
			if r >= rev {
				break
			}
			t, ok := peekChangeTime(v)
			if ok && !t.Before(cutoff) {
				break
			}
			upTo = r
		}
	}
	if upTo == compacted {
		return nil
	}
	for r := compacted + 1; r <= upTo; r++ {
		if err := changes.Delete(revKey(r)); err != nil {
			return fmt.Errorf("boltstore: compact change %d: %w", r, err)
		}
	}
	if err := tx.Bucket(bucketMeta).Put(keyCompacted, i64(upTo)); err != nil {
		return fmt.Errorf("boltstore: write compacted revision: %w", err)
	}
	return nil
}

// putPolicy stores p and returns its encoding.
func putPolicy(b *bolt.Bucket, p *corsdv1.Policy) ([]byte, error) {
	data, err := marshal(p)
	if err != nil {
		return nil, err
	}
	if err := b.Put([]byte(p.GetName()), data); err != nil {
		return nil, fmt.Errorf("boltstore: write policy %q: %w", p.GetName(), err)
	}
	return data, nil
}
