package boltstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BackupFile writes a consistent copy of the database file to w, from one
// read transaction, while reads and writes go on. The copy is itself a
// database that Open and Restore accept; it is bbolt's file format, which
// only this package reads. Store.Backup writes the backend-neutral format
// instead. A long copy delays writes that must grow the file beyond the
// reserved mapping until it ends.
func (s *Store) BackupFile(ctx context.Context, w io.Writer) (int64, error) {
	if err := s.acquire(ctx, "backup"); err != nil {
		return 0, err
	}
	defer s.release()
	var n int64
	err := s.view("backup", func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(ctxWriter{ctx: ctx, w: w})
		return err
	})
	if err != nil {
		return n, fmt.Errorf("boltstore: backup: %w", err)
	}
	return n, nil
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

// RestoreOption configures Restore.
type RestoreOption func(*restoreOptions)

type restoreOptions struct{ overwrite bool }

// Overwrite lets Restore replace an existing database file. The file must
// not be open in another process (corsd must be stopped).
func Overwrite() RestoreOption { return func(o *restoreOptions) { o.overwrite = true } }

// Restore installs the backup at backupPath as the database at dbPath. It
// copies the backup beside dbPath, verifies the copy (see Verify) and moves
// it into place atomically, so dbPath is either untouched or the complete
// backup. It refuses to replace an existing dbPath (ErrExists) unless given
// Overwrite, and a dbPath that another process has open (ErrLocked).
func Restore(backupPath, dbPath string, opts ...RestoreOption) (err error) {
	var o restoreOptions
	for _, opt := range opts {
		opt(&o)
	}
	if backupPath == "" || dbPath == "" {
		return errors.New("boltstore: restore: empty path")
	}
	if _, err := os.Stat(dbPath); err == nil {
		if !o.overwrite {
			return fmt.Errorf("boltstore: restore to %s: %w; pass Overwrite to replace it", dbPath, ErrExists)
		}
		// Hold the lock of the current file so that no corsd opens it (or
		// has it open) while it is being replaced.
		old, err := openBolt(dbPath, &bolt.Options{Timeout: 100 * time.Millisecond, ReadOnly: false}, 100*time.Millisecond)
		if err != nil && errors.Is(err, ErrLocked) {
			return fmt.Errorf("boltstore: restore to %s: %w", dbPath, err)
		}
		if err == nil {
			defer func() { _ = old.Close() }()
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("boltstore: restore to %s: %w", dbPath, err)
	}

	src, err := os.Open(backupPath) //nolint:gosec // G304: the operator names the backup to restore
	if err != nil {
		return fmt.Errorf("boltstore: restore: %w", err)
	}
	defer func() { _ = src.Close() }()
	tmp, err := os.CreateTemp(filepath.Dir(dbPath), "."+filepath.Base(dbPath)+".restore-*")
	if err != nil {
		return fmt.Errorf("boltstore: restore: %w", err)
	}
	tmpPath := tmp.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmpPath)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("boltstore: restore: %w", err)
	}
	if _, err := io.Copy(tmp, src); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("boltstore: restore: copy %s: %w", backupPath, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("boltstore: restore: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("boltstore: restore: %w", err)
	}
	if err := Verify(tmpPath); err != nil {
		return fmt.Errorf("boltstore: restore: backup %s: %w", backupPath, err)
	}
	if o.overwrite {
		err = os.Rename(tmpPath, dbPath)
	} else {
		// Link fails if dbPath appeared meanwhile; rename would replace it.
		if err = os.Link(tmpPath, dbPath); err == nil {
			_ = os.Remove(tmpPath)
		} else if errors.Is(err, os.ErrExist) {
			err = fmt.Errorf("%w; pass Overwrite to replace it", ErrExists)
		}
	}
	if err != nil {
		return fmt.Errorf("boltstore: restore to %s: %w", dbPath, err)
	}
	return syncDir(filepath.Dir(dbPath))
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir) //nolint:gosec // G304: the directory of the operator's database path
	if err != nil {
		return fmt.Errorf("boltstore: restore: %w", err)
	}
	defer func() { _ = d.Close() }()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("boltstore: restore: sync %s: %w", dir, err)
	}
	return nil
}

// Verify opens the database at path read-only and checks it: a bbolt file
// whose pages are consistent (bbolt's tx.Check), with the corsd layout and a
// schema version this binary supports, every policy and change decodable.
// The file must not be open for writing by another process.
func Verify(path string) error {
	db, err := openBolt(path, &bolt.Options{ReadOnly: true, Timeout: DefaultLockTimeout}, DefaultLockTimeout)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	return safeTx(func() error {
		return db.View(func(tx *bolt.Tx) error {
			var errs []error
			for err := range tx.Check() {
				errs = append(errs, err)
			}
			if len(errs) > 0 {
				return fmt.Errorf("%w: %s: the consistency check failed: %w", ErrCorrupt, path, errors.Join(errs...))
			}
			meta := tx.Bucket(bucketMeta)
			if meta == nil {
				return fmt.Errorf("%w: %s: no %q bucket", ErrCorrupt, path, bucketMeta)
			}
			got, ok := getU64(meta, keySchema)
			if !ok {
				return fmt.Errorf("%w: %s: no schema version", ErrCorrupt, path)
			}
			if want := currentSchema(migrations); got > want {
				return fmt.Errorf("boltstore: verify %s: %w", path, &SchemaVersionError{Found: got, Supported: want})
			}
			if err := checkLayout(tx); err != nil {
				return fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
			}
			if err := tx.Bucket(bucketPolicies).ForEach(func(k, v []byte) error {
				_, err := decodePolicy(string(k), v)
				return err
			}); err != nil {
				return fmt.Errorf("boltstore: verify %s: %w", path, err)
			}
			return tx.Bucket(bucketChanges).ForEach(func(k, v []byte) error {
				if _, err := decodeChange(k, v); err != nil {
					return fmt.Errorf("boltstore: verify %s: %w", path, err)
				}
				return nil
			})
		})
	})
}
