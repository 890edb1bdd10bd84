package boltstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/corsd/corsd/internal/backupfmt"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// Backup writes the state of one read transaction (policies, revision and
// retained change log) to w in the backend-neutral format of
// internal/backupfmt, while reads and writes go on.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := s.acquire(ctx, "backup"); err != nil {
		return 0, err
	}
	defer s.release()
	var n int64
	err := s.view("backup", func(tx *bolt.Tx) error {
		bw, err := backupfmt.NewWriter(ctxWriter{ctx: ctx, w: w}, metaInt(tx, keyRevision), metaInt(tx, keyCompacted), "bolt", s.now())
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketPolicies).ForEach(func(k, v []byte) error {
			p, err := decodePolicy(string(k), v)
			if err != nil {
				return err
			}
			return bw.Policy(p)
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketChanges).ForEach(func(k, v []byte) error {
			c, err := decodeChange(k, v)
			if err != nil {
				return err
			}
			return bw.Change(c)
		}); err != nil {
			return err
		}
		n, err = bw.Close()
		return err
	})
	if err != nil {
		return n, fmt.Errorf("boltstore: backup: %w", err)
	}
	return n, nil
}

// Restore loads a backup in the backend-neutral format into the store,
// which must be empty, in one transaction: either all of it is stored or
// nothing. Watchers are cut off with store.ErrWatchTooSlow and resume
// from the restored state.
func (s *Store) Restore(ctx context.Context, r io.Reader) error {
	if err := s.acquire(ctx, "restore"); err != nil {
		return err
	}
	defer s.release()
	br, err := backupfmt.NewReader(r)
	if err != nil {
		return fmt.Errorf("boltstore: restore: %w: %w", store.ErrInvalidArgument, err)
	}
	h := br.Header()
	err = safeTx(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			if rev := metaInt(tx, keyRevision); rev != 0 || tx.Bucket(bucketPolicies).Stats().KeyN > 0 {
				return fmt.Errorf("boltstore: restore: the store is at revision %d: %w; restore into a new database", rev, store.ErrNotEmpty)
			}
			policies, changes := tx.Bucket(bucketPolicies), tx.Bucket(bucketChanges)
			for {
				if err := ctx.Err(); err != nil {
					return err
				}
				rec, err := br.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return fmt.Errorf("%w: %w", store.ErrInvalidArgument, err)
				}
				switch x := rec.GetRecord().(type) {
				case *corsdv1.BackupRecord_Policy:
					if _, err := putPolicy(policies, x.Policy); err != nil {
						return err
					}
				case *corsdv1.BackupRecord_Change:
					data, err := marshal(x.Change)
					if err != nil {
						return err
					}
					if err := changes.Put(revKey(x.Change.GetRevision()), data); err != nil {
						return fmt.Errorf("boltstore: restore change %d: %w", x.Change.GetRevision(), err)
					}
				}
			}
			meta := tx.Bucket(bucketMeta)
			if err := meta.Put(keyRevision, i64(h.GetRevision())); err != nil {
				return err
			}
			if err := meta.Put(keyCompacted, i64(h.GetCompactedRevision())); err != nil {
				return err
			}
			return rebuildHosts(tx)
		})
	})
	if err != nil {
		return fmt.Errorf("boltstore: restore: %w", err)
	}
	s.hub.Skip(h.GetRevision(), fmt.Errorf("boltstore: watch: the store was restored to revision %d: %w", h.GetRevision(), store.ErrWatchTooSlow))
	return nil
}

// RestoreFile creates the database at dbPath from the backup at
// backupPath: a backup in the backend-neutral format (corsctl backup,
// Store.Backup), or a copy of a bbolt database file (BackupFile, and
// backups of corsd before the neutral format). The database is built
// beside dbPath, verified, and moved into place atomically, so dbPath is
// either untouched or the complete backup. It refuses to replace an
// existing dbPath (ErrExists) unless given Overwrite, and a dbPath that
// another process has open (ErrLocked).
func RestoreFile(ctx context.Context, backupPath, dbPath string, opts ...RestoreOption) (err error) {
	src, err := os.Open(backupPath) //nolint:gosec // G304: the operator names the backup to restore
	if err != nil {
		return fmt.Errorf("boltstore: restore: %w", err)
	}
	defer func() { _ = src.Close() }()
	magic := make([]byte, len(backupfmt.Magic))
	if _, err := io.ReadFull(src, magic); err != nil || string(magic) != backupfmt.Magic {
		// Not the neutral format: a bbolt file, which Restore verifies.
		return Restore(backupPath, dbPath, opts...)
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("boltstore: restore: %w", err)
	}
	dir, base := filepath.Dir(dbPath), filepath.Base(dbPath)
	tmpDir, err := os.MkdirTemp(dir, "."+base+".restore-*")
	if err != nil {
		return fmt.Errorf("boltstore: restore: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmpDir) }()
	tmpPath := filepath.Join(tmpDir, base)
	st, err := Open(tmpPath)
	if err != nil {
		return err
	}
	if err := st.Restore(ctx, src); err != nil {
		_ = st.Close()
		return fmt.Errorf("boltstore: restore %s: %w", backupPath, err)
	}
	if err := st.Close(); err != nil {
		return err
	}
	// Restore's own checks: the lock on an existing dbPath, Overwrite,
	// verification and the atomic move.
	return Restore(tmpPath, dbPath, opts...)
}
