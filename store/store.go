// Package store defines how corsd persists policies: the Store interface
// that every backend implements, its sentinel errors and its event types.
// It imports no backend; see store/boltstore (the default, one bbolt file)
// and store/etcdstore (several replicas on one etcd cluster), and
// store/storetest, the conformance suite that checks this contract, and
// only this contract, against every backend.
//
// # The contract
//
// Revisions. A store has one global revision: 0 when empty, and every
// successful write (Create, Update, Delete, Restore excepted) takes exactly
// the previous revision plus one, so revisions are strictly increasing and
// dense, with no gap. A failed write consumes none. Dense revisions let a
// watcher tell a gap from a quiet period; a backend whose native revisions
// have gaps (etcd's are global to the cluster) keeps its own counter.
//
// Change log. Every write records a Change (revision, time, actor, kind,
// name, policy before and after) in the same transaction as the write
// itself: the change is durable exactly when the write is. The log is data
// of corsd, pruned only by the retention the backend is configured with
// (oldest first; the newest change is always kept), never by the backend's
// own history compaction. Changes and Watch below a pruned revision fail
// with ErrCompacted; the caller resyncs from revision 0.
//
// Uniqueness. Names are unique (ErrExists) and so are hosts: no two
// policies govern the same host (compared without regard to case). Both are
// checked inside the write transaction, so of two concurrent writes that
// claim the same name or host, through one process or through two
// replicas, exactly one wins; the other fails with a *HostConflictError
// (which wraps ErrExists) and writes nothing.
//
// Watch. Watch(ctx, 0) streams one consistent state (EventSnapshot events,
// then EventSynced with its revision) and then every later change. Watch
// (ctx, since) streams every change after since, provided since is
// retained. Either way, each change arrives once, in revision order, with
// no gap; when names are given only their changes are delivered (revisions
// then skip the others). Memory per watcher is bounded by a constant (the
// watch buffer), not by the size of the store: the initial state is read
// and sent one policy at a time. A watcher whose reader falls more than the
// watch buffer behind is cut off with ErrWatchTooSlow and resumes from the
// last revision it received.
//
// Errors. Backends wrap ErrNotFound, ErrExists, ErrConflict, ErrCompacted,
// ErrWatchTooSlow, ErrClosed, ErrInvalidArgument and ErrUnavailable; their
// own errors never leave the backend unwrapped. A failed write leaves the
// store untouched.
//
// Backup. Backup writes the policies, the revision and the retained change
// log of one consistent state in the backend-neutral format of
// internal/backupfmt; Restore loads such a backup into an empty store of
// any backend, with the same revisions, etags, times and change log.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

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
	// ErrInvalidArgument: the call itself is malformed (a page token that
	// the store did not issue, a negative page size or limit, a policy
	// without a name); retrying it unchanged fails again.
	ErrInvalidArgument = errors.New("store: invalid argument")
	// ErrUnavailable: the backend cannot be reached (a network store that
	// is down, partitioned or without a leader) within its timeout. The
	// call may succeed later. A write that fails with it may have been
	// applied all the same (its outcome was lost): read before retrying.
	ErrUnavailable = errors.New("store: unavailable")
	// ErrNotEmpty: Restore needs an empty store.
	ErrNotEmpty = errors.New("store: not empty")
)

// HostConflictError is a write refused because another policy already
// governs one of its hosts. It wraps ErrExists.
type HostConflictError struct {
	Index int    // index of the host in the written policy's hosts
	Host  string // the host, as written
	Owner string // the policy that governs it
}

func (e *HostConflictError) Error() string {
	return fmt.Sprintf("store: host %q (hosts[%d]) is already governed by %s; remove it from one of the two policies", e.Host, e.Index, e.Owner)
}

// Unwrap makes errors.Is(err, ErrExists) hold.
func (e *HostConflictError) Unwrap() error { return ErrExists }

// HostKey is the form in which hosts are compared for uniqueness.
func HostKey(host string) string { return strings.ToLower(host) }

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
	// EventProgress says that a watch limited to names has passed every
	// change up to Revision, changes it left out included; it carries no
	// policy. Such watches send it after the changes they leave out, at
	// most once per batch; others never send it.
	EventProgress
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
	// context.Canceled, ErrWatchTooSlow, ErrCompacted, ErrUnavailable or
	// ErrClosed.
	Err() error
}

// Store persists policies under the contract in the package comment. Every
// write is one transaction that assigns the next global revision and
// records a Change. Implementations are safe for concurrent use.
type Store interface {
	// Create stores p under p.Name. It sets revision, etag, create_time and
	// update_time, and returns the stored policy. ErrExists if the name is
	// taken, a *HostConflictError if a host is.
	Create(ctx context.Context, p *corsdv1.Policy) (*corsdv1.Policy, error)
	// Get returns the stored policy or ErrNotFound.
	Get(ctx context.Context, name string) (*corsdv1.Policy, error)
	// List returns up to pageSize policies (0 means 100) after pageToken.
	List(ctx context.Context, pageSize int, pageToken string) (ListPage, error)
	// Update applies mutate to a copy of the stored policy when pre holds,
	// and stores the result. The name and output-only fields that mutate sets
	// are ignored. ErrNotFound, ErrConflict, a *HostConflictError, or
	// mutate's error.
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
	// With names, only those policies are read and delivered (the backend
	// filters before decoding); without, every policy.
	Watch(ctx context.Context, since int64, names ...string) (Watch, error)
	// Backup writes one consistent state (policies, revision, retained
	// change log) to w in the backend-neutral backup format while reads and
	// writes go on, and returns the bytes written.
	Backup(ctx context.Context, w io.Writer) (int64, error)
	// Restore loads a backup written by any backend's Backup into this
	// store, which must be empty (revision 0; else ErrNotEmpty). The store
	// then has the backup's policies, revision and change log. A backup that
	// does not check out fails with ErrInvalidArgument and writes nothing.
	Restore(ctx context.Context, r io.Reader) error
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
