package boltstore

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// Page sizes of List and Changes.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// Get returns the stored policy or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, name string) (*corsdv1.Policy, error) {
	if err := s.acquire(ctx, "get"); err != nil {
		return nil, err
	}
	defer s.release()
	var p *corsdv1.Policy
	err := s.view("get", func(tx *bolt.Tx) error {
		var err error
		p, err = getPolicy(tx.Bucket(bucketPolicies), name)
		return err
	})
	return p, err
}

// List returns policies in name order: up to pageSize (0 means 100, at most
// 1000) after the one pageToken names. Tokens stay valid across writes: a
// page starts after the last name of the previous one.
func (s *Store) List(ctx context.Context, pageSize int, pageToken string) (store.ListPage, error) {
	if pageSize < 0 {
		return store.ListPage{}, fmt.Errorf("boltstore: list: negative page size %d: %w", pageSize, store.ErrInvalidArgument)
	}
	if pageSize == 0 {
		pageSize = defaultPageSize
	}
	pageSize = min(pageSize, maxPageSize)
	var after []byte
	if pageToken != "" {
		name, err := decodePageToken(pageToken)
		if err != nil {
			return store.ListPage{}, err
		}
		after = []byte(name)
	}
	if err := s.acquire(ctx, "list"); err != nil {
		return store.ListPage{}, err
	}
	defer s.release()

	var page store.ListPage
	err := s.view("list", func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketPolicies).Cursor()
		k, v := c.First()
		if after != nil {
			k, v = c.Seek(after)
			if k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			if len(page.Policies) == pageSize {
				page.NextPageToken = encodePageToken(page.Policies[len(page.Policies)-1].GetName())
				break
			}
			p, err := decodePolicy(string(k), v)
			if err != nil {
				return err
			}
			page.Policies = append(page.Policies, p)
		}
		return nil
	})
	if err != nil {
		return store.ListPage{}, err
	}
	return page, nil
}

// Changes returns change log entries after q.Since in revision order. The
// limit defaults to 100 and is capped at 1000.
func (s *Store) Changes(ctx context.Context, q store.ChangesQuery) ([]*corsdv1.Change, error) {
	if q.Since < 0 || q.Limit < 0 {
		return nil, fmt.Errorf("boltstore: changes: negative since or limit: %w", store.ErrInvalidArgument)
	}
	limit := q.Limit
	if limit == 0 {
		limit = defaultPageSize
	}
	limit = min(limit, maxPageSize)
	if err := s.acquire(ctx, "changes"); err != nil {
		return nil, err
	}
	defer s.release()

	var out []*corsdv1.Change
	err := s.view("changes", func(tx *bolt.Tx) error {
		compacted := metaInt(tx, keyCompacted)
		if q.Since > 0 && q.Since < compacted {
			return compactedError(q.Since, compacted)
		}
		c := tx.Bucket(bucketChanges).Cursor()
		for k, v := c.Seek(revKey(max(q.Since, compacted) + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			if q.Name != "" && peekChangeName(v) != q.Name {
				continue
			}
			ch, err := decodeChange(k, v)
			if err != nil {
				return err
			}
			out = append(out, ch)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func compactedError(since, compacted int64) error {
	return fmt.Errorf("boltstore: changes after revision %d: the log starts after revision %d: %w", since, compacted, store.ErrCompacted)
}

// Revision returns the revision of the last committed write (0 if none).
func (s *Store) Revision(ctx context.Context) (int64, error) {
	if err := s.acquire(ctx, "revision"); err != nil {
		return 0, err
	}
	defer s.release()
	var rev int64
	err := s.view("revision", func(tx *bolt.Tx) error {
		rev = metaInt(tx, keyRevision)
		return nil
	})
	return rev, err
}
