// Package boltstore is the default corsd store: the policies, their change
// log and the global revision in one bbolt file, with no server to run.
//
// Every write is one bbolt transaction that assigns the next revision and
// appends a Change; concurrent writers are grouped into shared transactions
// so that they share one fsync (group commit, see group.go). An acknowledged write is on disk: the
// file is fsynced on every commit.
//
// Layout (schema version 1):
//
//	meta      "schema" → uint64, "revision" → uint64 (last committed),
//	          "compacted" → uint64 (every change ≤ it was deleted)
//	policies  name → deterministic protobuf corsd.v1.Policy
//	changes   8-byte big-endian revision → protobuf corsd.v1.Change
//
// A Store is safe for concurrent use. Only one process may open a file at a
// time: bbolt holds an exclusive lock on it.
package boltstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/corsd/corsd/store"
	"github.com/corsd/corsd/store/internal/feed"
)

// Defaults of the options.
const (
	// DefaultLockTimeout bounds how long Open waits for another process to
	// release the file.
	DefaultLockTimeout = 2 * time.Second
	// DefaultMaxChanges is how many changes the log keeps by default.
	DefaultMaxChanges = 100_000
	// DefaultWatchBuffer is how many events a watcher may have pending
	// before it is cut off with store.ErrWatchTooSlow.
	DefaultWatchBuffer = 1024
)

const (
	// maxNameLen bounds policy names (bbolt keys); the server accepts far
	// shorter ones.
	maxNameLen = 1024
	// initialMmapSize reserves address space (not memory) so that a write
	// that grows the file rarely has to remap, which would wait for every
	// open read transaction (a backup, a watch snapshot) to end.
	initialMmapSize = 256 << 20
)

// Errors of Open and Restore. They are wrapped with the file name.
var (
	// ErrLocked: another process (probably another corsd) holds the file.
	ErrLocked = errors.New("boltstore: database file is locked by another process")
	// ErrCorrupt: the file is not a bbolt file, is damaged, or is a bbolt
	// file that corsd did not write.
	ErrCorrupt = errors.New("boltstore: not a valid corsd database")
	// ErrExists: Restore refused to replace an existing database.
	ErrExists = errors.New("boltstore: database file already exists")
)

// SchemaVersionError reports a file written by a newer corsd.
type SchemaVersionError struct {
	Found     uint64 // version recorded in the file
	Supported uint64 // newest version this binary understands
}

func (e *SchemaVersionError) Error() string {
	return fmt.Sprintf("database schema version %d is newer than this corsd supports (%d); upgrade corsd", e.Found, e.Supported)
}

// Option configures Open.
type Option func(*options)

type options struct {
	lockTimeout time.Duration
	maxChanges  int
	maxAge      time.Duration
	now         func() time.Time
	watchBuffer int
	// migrations replaces the package table in tests.
	migrations []migration
}

func defaultOptions() options {
	return options{
		lockTimeout: DefaultLockTimeout,
		maxChanges:  DefaultMaxChanges,
		now:         time.Now,
		watchBuffer: DefaultWatchBuffer,
		migrations:  migrations,
	}
}

// WithLockTimeout sets how long Open waits for a file locked by another
// process before it fails with ErrLocked (default DefaultLockTimeout). A
// value ≤ 0 keeps the default: Open never waits forever.
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.lockTimeout = d
		}
	}
}

// WithRetention bounds the change log: after each write, changes beyond the
// newest maxChanges, and changes older than maxAge, are deleted (the newest
// change is always kept). Zero disables a bound; the default keeps
// DefaultMaxChanges changes of any age. Watchers and Changes callers that
// ask for a deleted revision get store.ErrCompacted.
func WithRetention(maxChanges int, maxAge time.Duration) Option {
	return func(o *options) {
		o.maxChanges = max(maxChanges, 0)
		o.maxAge = max(maxAge, 0)
	}
}

// WithClock sets the clock that stamps create, update and change times
// (default time.Now). For tests.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithWatchBuffer sets how many events each watcher may have pending before
// it is cut off with store.ErrWatchTooSlow (default DefaultWatchBuffer).
func WithWatchBuffer(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.watchBuffer = n
		}
	}
}

// Store is a store.Store backed by one bbolt file. Create it with Open.
type Store struct {
	db   *bolt.DB
	path string
	opts options

	hub feed.Hub
	// writers counts writes in flight: a lone writer commits in its own
	// goroutine, the others through the committer (see group.go).
	writers   atomic.Int32
	committer committer

	// closeMu is held shared by every operation and exclusively by Close,
	// so the bbolt file is never closed under a running operation.
	closeMu   sync.RWMutex
	closed    bool
	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open opens the store in the file at path, creating it (mode 0600) when it
// does not exist, and migrates an older schema. It fails with ErrLocked when
// another process holds the file, with ErrCorrupt for a damaged or foreign
// file, and with a *SchemaVersionError for a file of a newer corsd.
func Open(path string, opts ...Option) (*Store, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return open(path, o)
}

func open(path string, o options) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("boltstore: open: empty path: %w", store.ErrInvalidArgument)
	}
	db, err := openBolt(path, &bolt.Options{
		Timeout:         o.lockTimeout,
		InitialMmapSize: initialMmapSize,
		FreelistType:    bolt.FreelistMapType,
	}, o.lockTimeout)
	if err != nil {
		return nil, err
	}

	var rev int64
	err = safeTx(func() error {
		return db.Update(func(tx *bolt.Tx) error {
			var err error
			if rev, err = prepare(tx, path, o.migrations); err != nil {
				return err
			}
			return rebuildHosts(tx)
		})
	})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s := &Store{db: db, path: path, opts: o}
	s.hub.Init("boltstore", rev)
	return s, nil
}

// openBolt opens a bbolt file and turns its failures (and panics on a
// damaged file) into errors that name the file and say what to do.
func openBolt(path string, bo *bolt.Options, timeout time.Duration) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("%w: %s: the file is damaged (%v)", ErrCorrupt, path, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, bo)
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s: still locked after %s; is another corsd running with the same file?", ErrLocked, path, timeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrInvalidMapping):
		return nil, fmt.Errorf("%w: %s: the file is corrupt or is not a bbolt database (%w)", ErrCorrupt, path, err)
	default:
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
}

// safeTx runs fn and turns a panic (bbolt panics on some damaged pages)
// into ErrCorrupt.
func safeTx(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: the file is damaged (%v)", ErrCorrupt, r)
		}
	}()
	return fn()
}

// Close ends every watch with store.ErrClosed, waits for running operations
// and closes the file. Later calls on s fail with store.ErrClosed; a second
// Close returns the first one's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.hub.Close() // ends the watches and waits for them
		s.closeMu.Lock()
		defer s.closeMu.Unlock()
		s.closed = true
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("boltstore: close %s: %w", s.path, err)
		}
	})
	return s.closeErr
}

// acquire starts an operation: it fails when ctx is done or s is closed,
// and otherwise holds closeMu shared until release.
func (s *Store) acquire(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("boltstore: %s: %w", op, err)
	}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return fmt.Errorf("boltstore: %s: %w", op, store.ErrClosed)
	}
	return nil
}

func (s *Store) release() { s.closeMu.RUnlock() }

// view runs a read transaction; bbolt errors come back wrapped with op.
func (s *Store) view(op string, fn func(tx *bolt.Tx) error) error {
	var fnErr error
	err := safeTx(func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			fnErr = fn(tx)
			return fnErr
		})
	})
	if err != nil && !errors.Is(err, fnErr) {
		return fmt.Errorf("boltstore: %s: %w", op, err)
	}
	return err
}

func (s *Store) now() time.Time { return s.opts.now() }
