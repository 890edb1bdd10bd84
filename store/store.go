// Package store defines how corsd persists policies: the Store interface
// that every backend implements, its sentinel errors and its event types.
// It imports no backend; see store/boltstore for the default one and
// store/storetest for the conformance suite every backend must pass.
package store

import (
	"context"
	"errors"
	"io"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// Sentinel errors. Backends wrap them; callers test with errors.Is.
var (
	// ErrNotFound: the policy does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: a policy with that name already exists.
	ErrExists = errors.New("store: already exists")
	// ErrConflict: the precondition (etag or revision) no longer holds.
	ErrConflict = errors.New("store: conflict: the policy changed since it was read")
	// ErrCompacted: the requested revision was removed from the change log;
	// the caller must resync from the current state (revision 0).
	ErrCompacted = errors.New("store: revision compacted; resync from the current state")
	// ErrWatchTooSlow: the watcher fell behind and was cut off; resume from
	// the last revision it received.
	ErrWatchTooSlow = errors.New("store: watcher too slow; resume from its last revision")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("store: closed")
	// ErrDataLoss: a stored record is damaged (its checksum does not
	// match); the rest of the store is readable, and deleting the damaged
	// policy (without an etag) or restoring a backup repairs it.
	ErrDataLoss = errors.New("store: data loss: a stored record is damaged")
	// ErrInvalidArgument: the call itself is malformed (a page token that
	// the store did not issue, a negative page size or limit, a policy
	// without a name); retrying it unchanged fails again.
	ErrInvalidArgument = errors.New("store: invalid argument")
)

// Precondition makes a write conditional. The zero value is unconditional.
type Precondition struct {
	// Etag, when set, must equal the stored policy's etag.
	Etag string
	// Revision, when non-zero, must equal the stored policy's revision.
	Revision int64
}

// MutateFunc edits a copy of the stored policy inside the write transaction.
// It may be called more than once for one write, so it must depend only on
// its argument. An error aborts the write and is returned as is.
type MutateFunc func(p *corsdv1.Policy) error

// ListPage is one page of policies in name order.
type ListPage struct {
	Policies      []*corsdv1.Policy
	NextPageToken string // empty on the last page
}

// ChangesQuery selects audit log entries.
type ChangesQuery struct {
	// Since: return changes with a revision greater than Since. 0 starts at
	// the oldest retained change; a compacted Since fails with ErrCompacted.
	Since int64
	// Limit caps the number returned; 0 means 100.
	Limit int
	// Name, when set, keeps only the changes of that policy.
	Name string
}

// EventType is the type of a watch Event.
type EventType uint8

const (
	// EventSnapshot carries one policy of the initial state.
	EventSnapshot EventType = iota + 1
	// EventSynced ends the initial state; Revision is its revision.
	EventSynced
	// EventPut carries a created or updated policy.
	EventPut
	// EventDelete names a deleted policy.
	EventDelete
)

// Event is one item of a watch.
type Event struct {
	Type     EventType
	Revision int64
	Name     string
	Policy   *corsdv1.Policy // nil for EventSynced and EventDelete
}

// Watch is a live subscription. Events arrive in revision order with no gap
// and no duplicate. Events is closed when the context ends, the store
// closes, or the watcher is cut off; Err then tells which.
type Watch interface {
	Events() <-chan Event
	// Err returns nil while Events is open, then the reason it closed:
	// context.Canceled, ErrWatchTooSlow or ErrClosed.
	Err() error
}

// Store persists policies. Every write is one transaction that assigns a new
// global, monotonic revision and records a Change. Implementations are safe
// for concurrent use.
type Store interface {
	// Create stores p under p.Name. It sets revision, etag, create_time and
	// update_time, and returns the stored policy. ErrExists if taken.
	Create(ctx context.Context, p *corsdv1.Policy) (*corsdv1.Policy, error)
	// Get returns the stored policy or ErrNotFound.
	Get(ctx context.Context, name string) (*corsdv1.Policy, error)
	// List returns up to pageSize policies (0 means 100) after pageToken.
	List(ctx context.Context, pageSize int, pageToken string) (ListPage, error)
	// Update applies mutate to a copy of the stored policy when pre holds,
	// and stores the result. The name and output-only fields that mutate sets
	// are ignored. ErrNotFound, ErrConflict, or mutate's error.
	Update(ctx context.Context, name string, pre Precondition, mutate MutateFunc) (*corsdv1.Policy, error)
	// Delete removes a policy when pre holds and returns the revision of the
	// delete. ErrNotFound or ErrConflict.
	Delete(ctx context.Context, name string, pre Precondition) (int64, error)
	// Changes returns audit log entries in revision order.
	Changes(ctx context.Context, q ChangesQuery) ([]*corsdv1.Change, error)
	// Revision returns the revision of the last committed write (0 if none).
	Revision(ctx context.Context) (int64, error)
	// Watch subscribes to the policies. since == 0: the current state as
	// EventSnapshot events and an EventSynced, then every change. since > 0:
	// every change after since; ErrCompacted if the log no longer holds it.
	Watch(ctx context.Context, since int64) (Watch, error)
	// Backup writes a consistent copy of the database to w while reads and
	// writes go on, and returns the bytes written.
	Backup(ctx context.Context, w io.Writer) (int64, error)
	// Close releases the store; later calls fail with ErrClosed.
	Close() error
}

type actorKey struct{}

// WithActor returns a context whose writes are recorded as made by actor.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// Actor returns the actor set by WithActor, or "unknown".
func Actor(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return "unknown"
}
