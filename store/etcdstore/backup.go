package etcdstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/corsd/corsd/internal/backupfmt"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

const (
	// backupPage is how many keys Backup reads per etcd call.
	backupPage = 64
	// restoreOps and restoreBytes bound one transaction of Restore, under
	// etcd's defaults (--max-txn-ops 128, --max-request-bytes 1.5 MiB)
	// unless a single record is larger.
	restoreOps   = 100
	restoreBytes = 1 << 20
)

// Backup writes the state at one etcd revision (policies, revision and
// retained change log) to w in the backend-neutral format of
// internal/backupfmt, while reads and writes go on. Should etcd's history
// be compacted past that revision before the backup is read through, it
// fails; take it again.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := s.start(ctx, "backup"); err != nil {
		return 0, err
	}
	rctx, cancel := s.reqCtx(ctx)
	resp, err := s.cli.Txn(rctx).Then(clientv3.OpGet(s.key(keyRevision)), clientv3.OpGet(s.key(keyCompacted))).Commit()
	cancel()
	if err != nil {
		return 0, s.wrap("backup", rctx, err)
	}
	rev, err := intValue(resp.Responses[0].GetResponseRange().GetKvs(), keyRevision)
	if err != nil {
		return 0, err
	}
	compacted, err := intValue(resp.Responses[1].GetResponseRange().GetKvs(), keyCompacted)
	if err != nil {
		return 0, err
	}
	at := resp.Header.GetRevision()
	bw, err := backupfmt.NewWriter(ctxWriter{ctx: ctx, w: w}, rev, compacted, "etcd", s.now())
	if err != nil {
		return 0, fmt.Errorf("etcdstore: backup: %w", err)
	}
	err = s.scan(ctx, dirPolicies, at, func(kv *mvccpb.KeyValue) error {
		p, err := decodePolicy(string(kv.Key[len(s.prefix)+len(dirPolicies):]), kv.Value)
		if err != nil {
			return err
		}
		return bw.Policy(p)
	})
	if err == nil {
		err = s.scan(ctx, dirChanges, at, func(kv *mvccpb.KeyValue) error {
			c, err := decodeChange(kv.Key, kv.Value)
			if err != nil {
				return err
			}
			return bw.Change(c)
		})
	}
	if err != nil {
		return 0, fmt.Errorf("etcdstore: backup: %w", err)
	}
	n, err := bw.Close()
	if err != nil {
		return n, fmt.Errorf("etcdstore: backup: %w", err)
	}
	return n, nil
}

// scan calls fn for every key under dir at etcd revision at, in order,
// reading a page at a time.
func (s *Store) scan(ctx context.Context, dir string, at int64, fn func(*mvccpb.KeyValue) error) error {
	from, end := s.prefix+dir, clientv3.GetPrefixRangeEnd(s.prefix+dir)
	for {
		rctx, cancel := s.reqCtx(ctx)
		resp, err := s.cli.Get(rctx, from, clientv3.WithRange(end), clientv3.WithLimit(backupPage), clientv3.WithRev(at))
		cancel()
		if errors.Is(err, rpctypes.ErrCompacted) {
			return fmt.Errorf("etcd's history was compacted past revision %d during the backup; take it again: %w", at, store.ErrUnavailable)
		}
		if err != nil {
			return s.wrap("backup", rctx, err)
		}
		for _, kv := range resp.Kvs {
			if err := fn(kv); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// ctxWriter stops a copy when its context ends.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// Restore loads a backup in the backend-neutral format into the store,
// which must be empty; see store.Store. The backup is first copied to a
// temporary file and checked through, so a bad backup writes nothing. It
// is then written in transactions of bounded size while m/restoring makes
// every write (through any replica) wait with store.ErrUnavailable; the
// revision is set last. Should etcd fail midway, Restore removes what it
// wrote (and fails with the error); the store is then empty again.
func (s *Store) Restore(ctx context.Context, r io.Reader) (err error) {
	if err := s.start(ctx, "restore"); err != nil {
		return err
	}
	tmp, err := os.CreateTemp("", "corsd-restore-*")
	if err != nil {
		return fmt.Errorf("etcdstore: restore: %w", err)
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	sum, err := backupfmt.Verify(io.TeeReader(r, tmp))
	if err != nil {
		return fmt.Errorf("etcdstore: restore: %w: %w", store.ErrInvalidArgument, err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("etcdstore: restore: %w", err)
	}
	br, err := backupfmt.NewReader(tmp)
	if err != nil {
		return fmt.Errorf("etcdstore: restore: %w: %w", store.ErrInvalidArgument, err)
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	token := make([]byte, 8)
	_, _ = rand.Read(token)
	lock := hex.EncodeToString(token)
	rctx, cancel := s.reqCtx(ctx)
	resp, err := s.cli.Txn(rctx).
		If(
			clientv3.Compare(clientv3.Value(s.key(keyRevision)), "=", "0"),
			clientv3.Compare(clientv3.CreateRevision(s.key(keyRestoring)), "=", 0),
		).
		Then(clientv3.OpPut(s.key(keyRestoring), lock)).
		Else(clientv3.OpGet(s.key(keyRevision))).
		Commit()
	cancel()
	if err != nil {
		return s.wrap("restore", rctx, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcdstore: restore: the store under %q is not empty (or another restore is running): %w; restore into an empty prefix", s.prefix, store.ErrNotEmpty)
	}
	defer func() {
		if err == nil {
			return
		}
		// Leave the prefix empty, as it was, so that the restore can be
		// run again.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.requestTimeout)
		defer cancel()
		_, _ = s.cli.Txn(cctx).If(clientv3.Compare(clientv3.Value(s.key(keyRestoring)), "=", lock)).Then(
			clientv3.OpDelete(s.prefix+dirPolicies, clientv3.WithPrefix()),
			clientv3.OpDelete(s.prefix+dirHosts, clientv3.WithPrefix()),
			clientv3.OpDelete(s.prefix+dirChanges, clientv3.WithPrefix()),
			clientv3.OpDelete(s.key(keyRestoring)),
		).Commit()
	}()

	var (
		ops   []clientv3.Op
		size  int
		hosts = map[string]bool{}
	)
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		rctx, cancel := s.reqCtx(ctx)
		defer cancel()
		resp, err := s.cli.Txn(rctx).If(clientv3.Compare(clientv3.Value(s.key(keyRestoring)), "=", lock)).Then(ops...).Commit()
		if err != nil {
			return s.wrap("restore", rctx, err)
		}
		if !resp.Succeeded {
			return fmt.Errorf("etcdstore: restore: the restore lock was taken away: %w", store.ErrConflict)
		}
		ops, size = ops[:0], 0
		return nil
	}
	add := func(op clientv3.Op, n int) error {
		if len(ops) > 0 && (len(ops)+1 > restoreOps || size+n > restoreBytes) {
			if err := flush(); err != nil {
				return err
			}
		}
		ops, size = append(ops, op), size+n
		return nil
	}
	for {
		rec, err := br.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("etcdstore: restore: %w: %w", store.ErrInvalidArgument, err)
		}
		switch x := rec.GetRecord().(type) {
		case *corsdv1.BackupRecord_Policy:
			data, err := marshal(x.Policy)
			if err != nil {
				return err
			}
			if err := add(clientv3.OpPut(s.policyKey(x.Policy.GetName()), string(data)), len(data)); err != nil {
				return err
			}
			// As bbolt's index: should two policies share a host, the
			// first by name owns it.
			for _, h := range x.Policy.GetHosts() {
				k := s.hostKey(h)
				if hosts[k] {
					continue
				}
				hosts[k] = true
				if err := add(clientv3.OpPut(k, x.Policy.GetName()), len(k)+len(x.Policy.GetName())); err != nil {
					return err
				}
			}
		case *corsdv1.BackupRecord_Change:
			data, err := marshal(x.Change)
			if err != nil {
				return err
			}
			if err := add(clientv3.OpPut(s.changeKey(x.Change.GetRevision()), string(data)), len(data)); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	h := sum.Header
	rctx, cancel = s.reqCtx(ctx)
	defer cancel()
	resp, err = s.cli.Txn(rctx).If(clientv3.Compare(clientv3.Value(s.key(keyRestoring)), "=", lock)).Then(
		clientv3.OpPut(s.key(keyCompacted), strconv.FormatInt(h.GetCompactedRevision(), 10)),
		clientv3.OpPut(s.key(keyRevision), strconv.FormatInt(h.GetRevision(), 10)),
		clientv3.OpDelete(s.key(keyRestoring)),
	).Commit()
	if err != nil {
		return s.wrap("restore", rctx, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcdstore: restore: the restore lock was taken away: %w", store.ErrConflict)
	}
	return nil
}
