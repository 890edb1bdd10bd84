package etcdstore

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
	"github.com/corsd/corsd/store/internal/feed"
)

// Page sizes of List and Changes.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
	// changesScan is how many changes Changes reads per etcd call while it
	// filters by name.
	changesScan = 64
)

// Get returns the stored policy or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, name string) (*corsdv1.Policy, error) {
	if err := s.start(ctx, "get"); err != nil {
		return nil, err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(rctx, s.policyKey(name))
	if err != nil {
		return nil, s.wrap("get", rctx, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("etcdstore: policy %q: %w", name, store.ErrNotFound)
	}
	return decodePolicy(name, resp.Kvs[0].Value)
}

// Page tokens carry the last name of the previous page behind a version
// prefix, base64url-encoded so that they are opaque and URL-safe.
const pageTokenPrefix = "p1:"

func encodePageToken(lastName string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + lastName))
}

func decodePageToken(tok string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	name, ok := strings.CutPrefix(string(raw), pageTokenPrefix)
	if err != nil || !ok || name == "" {
		return "", fmt.Errorf("etcdstore: list: malformed page token; pass the next_page_token of the previous page unchanged: %w", store.ErrInvalidArgument)
	}
	return name, nil
}

// List returns policies in name order; see store.Store. Tokens stay valid
// across writes: a page starts after the last name of the previous one.
func (s *Store) List(ctx context.Context, pageSize int, pageToken string) (store.ListPage, error) {
	if pageSize < 0 {
		return store.ListPage{}, fmt.Errorf("etcdstore: list: negative page size %d: %w", pageSize, store.ErrInvalidArgument)
	}
	if pageSize == 0 {
		pageSize = defaultPageSize
	}
	pageSize = min(pageSize, maxPageSize)
	from := s.prefix + dirPolicies
	if pageToken != "" {
		name, err := decodePageToken(pageToken)
		if err != nil {
			return store.ListPage{}, err
		}
		from = s.policyKey(name) + "\x00"
	}
	if err := s.start(ctx, "list"); err != nil {
		return store.ListPage{}, err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(rctx, from, clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.prefix+dirPolicies)), clientv3.WithLimit(int64(pageSize)))
	if err != nil {
		return store.ListPage{}, s.wrap("list", rctx, err)
	}
	var page store.ListPage
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), s.prefix+dirPolicies)
		p, err := decodePolicy(name, kv.Value)
		if err != nil {
			return store.ListPage{}, err
		}
		page.Policies = append(page.Policies, p)
	}
	if resp.More && len(page.Policies) > 0 {
		page.NextPageToken = encodePageToken(page.Policies[len(page.Policies)-1].GetName())
	}
	return page, nil
}

// Changes returns change log entries after q.Since in revision order; see
// store.Store. The limit defaults to 100 and is capped at 1000.
func (s *Store) Changes(ctx context.Context, q store.ChangesQuery) ([]*corsdv1.Change, error) {
	if q.Since < 0 || q.Limit < 0 {
		return nil, fmt.Errorf("etcdstore: changes: negative since or limit: %w", store.ErrInvalidArgument)
	}
	limit := q.Limit
	if limit == 0 {
		limit = defaultPageSize
	}
	limit = min(limit, maxPageSize)
	if err := s.start(ctx, "changes"); err != nil {
		return nil, err
	}
	var out []*corsdv1.Change
	after := q.Since
	first := true
	for len(out) < limit {
		rctx, cancel := s.reqCtx(ctx)
		batch := limit - len(out)
		if q.Name != "" {
			batch = changesScan
		}
		compacted, kvs, more, err := s.readLog(rctx, after, batch)
		cancel()
		if err != nil {
			return nil, s.wrap("changes", rctx, err)
		}
		if first {
			if q.Since > 0 && q.Since < compacted {
				return nil, fmt.Errorf("etcdstore: changes after revision %d: the log starts after revision %d: %w", q.Since, compacted, store.ErrCompacted)
			}
			first = false
		}
		for _, kv := range kvs {
			after = changeRev(kv.Key)
			if q.Name != "" && feed.ChangeName(kv.Value) != q.Name {
				continue
			}
			c, err := decodeChange(kv.Key, kv.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
			if len(out) == limit {
				break
			}
		}
		if !more {
			break
		}
	}
	return out, nil
}

// readLog reads the compacted revision and up to n changes after after,
// at one etcd revision.
func (s *Store) readLog(ctx context.Context, after int64, n int) (int64, []*mvccpb.KeyValue, bool, error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.key(keyCompacted)),
		clientv3.OpGet(s.changeKey(after+1), clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.prefix+dirChanges)), clientv3.WithLimit(int64(n))),
	).Commit()
	if err != nil {
		return 0, nil, false, err
	}
	compacted, err := intValue(resp.Responses[0].GetResponseRange().GetKvs(), keyCompacted)
	if err != nil {
		return 0, nil, false, err
	}
	r := resp.Responses[1].GetResponseRange()
	return compacted, r.GetKvs(), r.GetMore(), nil
}

func decodeChange(key, data []byte) (*corsdv1.Change, error) {
	c := new(corsdv1.Change)
	if err := proto.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("etcdstore: change %s does not decode: %w", key, err)
	}
	return c, nil
}

// changeRev parses the revision at the end of a change key.
func changeRev(key []byte) int64 {
	const digits = 20
	if len(key) < digits {
		return -1
	}
	var v int64
	for _, c := range key[len(key)-digits:] {
		if c < '0' || c > '9' {
			return -1
		}
		v = v*10 + int64(c-'0')
	}
	return v
}

// Revision returns the revision of the last committed write (0 if none).
func (s *Store) Revision(ctx context.Context) (int64, error) {
	if err := s.start(ctx, "revision"); err != nil {
		return 0, err
	}
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(rctx, s.key(keyRevision))
	if err != nil {
		return 0, s.wrap("revision", rctx, err)
	}
	return intValue(resp.Kvs, keyRevision)
}
