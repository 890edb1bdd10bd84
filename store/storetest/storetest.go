// Package storetest is the conformance suite that every store.Store backend
// must pass. It checks the contract written in package store, and only
// that. A backend's tests call Run with a constructor of fresh, empty
// stores that takes the suite's settings:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Config{
//			New: func(t *testing.T, o storetest.Options) store.Store { return openTemp(t, o) },
//		})
//	}
//
// The suite covers CRUD, paging, preconditions, errors with nothing
// written, dense revisions, the change log and its retention, name and host
// uniqueness under concurrent writers (through one store, and through two
// replicas when Config.Replica is set), watches (gap-free, duplicate-free,
// in order, filtered by name, under concurrent writers, with memory per
// watcher bounded), slow watchers, cancellation, Close, and Backup verified
// by restoring it into a fresh store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// eventTimeout bounds every wait for a watch event. Generous: the machine
// running the suite may be busy.
const eventTimeout = 15 * time.Second

// Options are the settings a test asks of a new store.
type Options struct {
	// MaxChanges is the change-log retention by count; 0 keeps the
	// backend's default (at least 100,000 changes).
	MaxChanges int
	// WatchBuffer is how many events a watcher may have pending before it
	// is cut off with store.ErrWatchTooSlow.
	WatchBuffer int
}

// Config describes the backend under test.
type Config struct {
	// New returns a new, empty, open store with the given settings. The
	// suite closes it at the end of each subtest (the constructor may
	// register its own cleanup too, so Close must tolerate a second call).
	New func(t *testing.T, o Options) store.Store
	// Replica, when set, opens a second store on the same data as s (a
	// second corsd replica on one etcd cluster). Writes through one must
	// be seen by the other, and uniqueness must hold across both.
	Replica func(t *testing.T, s store.Store, o Options) store.Store
	// WatchBuffer is the watch buffer of the stores of most tests; small
	// (64 or fewer) to exercise slow watchers quickly. Default 32.
	WatchBuffer int
}

// Run runs the conformance suite.
func Run(t *testing.T, cfg Config) {
	if cfg.WatchBuffer == 0 {
		cfg.WatchBuffer = 32
	}
	opts := Options{WatchBuffer: cfg.WatchBuffer}
	newStore := func(t *testing.T) store.Store {
		s := cfg.New(t, opts)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateGet", testCreateGet},
		{"CreateErrors", testCreateErrors},
		{"GetNotFound", testGetNotFound},
		{"Update", testUpdate},
		{"UpdateErrors", testUpdateErrors},
		{"Delete", testDelete},
		{"DeleteErrors", testDeleteErrors},
		{"Recreate", testRecreate},
		{"CanceledContext", testCanceledContext},
		{"MonotonicRevisions", testMonotonicRevisions},
		{"List", testList},
		{"ListErrors", testListErrors},
		{"ListTokenSurvivesWrites", testListTokenSurvivesWrites},
		{"ChangeLog", testChangeLog},
		{"ChangesQuery", testChangesQuery},
		{"NoLostUpdate", testNoLostUpdate},
		{"HostUniqueness", testHostUniqueness},
		{"ConcurrentHostClaims", func(t *testing.T, s store.Store) { testConcurrentClaims(t, s, s) }},
		{"WatchFromZero", testWatchFromZero},
		{"WatchFromRevision", testWatchFromRevision},
		{"WatchFutureRevision", testWatchFutureRevision},
		{"WatchNames", testWatchNames},
		{"WatchConcurrent", testWatchConcurrent},
		{"WatchSlowBeforeSynced", func(t *testing.T, s store.Store) { testWatchSlow(t, s, false) }},
		{"WatchSlowAfterSynced", func(t *testing.T, s store.Store) { testWatchSlow(t, s, true) }},
		{"WatchMemoryBounded", testWatchMemory},
		{"WatchCancel", testWatchCancel},
		{"WatchInvalid", testWatchInvalid},
		{"Backup", func(t *testing.T, s store.Store) { testBackup(t, s, newStore(t), true) }},
		{"BackupRestoreErrors", func(t *testing.T, s store.Store) { testRestoreErrors(t, s, newStore(t)) }},
		{"Close", testClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
	t.Run("ChangesCompacted", func(t *testing.T) {
		s := cfg.New(t, Options{MaxChanges: 5, WatchBuffer: cfg.WatchBuffer})
		t.Cleanup(func() { _ = s.Close() })
		testChangesCompacted(t, s)
	})
	t.Run("WatchCompacted", func(t *testing.T) {
		s := cfg.New(t, Options{MaxChanges: 5, WatchBuffer: cfg.WatchBuffer})
		t.Cleanup(func() { _ = s.Close() })
		testWatchCompacted(t, s)
	})
	t.Run("BackupCompacted", func(t *testing.T) {
		s := cfg.New(t, Options{MaxChanges: 5, WatchBuffer: cfg.WatchBuffer})
		t.Cleanup(func() { _ = s.Close() })
		mustCreate(t, s, policy("policies/early"))
		for i := range 9 {
			if _, err := s.Update(t.Context(), "policies/early", store.Precondition{}, setDescription(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		testBackup(t, s, newStore(t), false)
	})
	if cfg.Replica == nil {
		return
	}
	replicaPair := func(t *testing.T) (store.Store, store.Store) {
		a := newStore(t)
		b := cfg.Replica(t, a, opts)
		t.Cleanup(func() { _ = b.Close() })
		return a, b
	}
	t.Run("ReplicaConcurrentClaims", func(t *testing.T) {
		a, b := replicaPair(t)
		testConcurrentClaims(t, a, b)
	})
	t.Run("ReplicaNoLostUpdate", func(t *testing.T) {
		a, b := replicaPair(t)
		testReplicaNoLostUpdate(t, a, b)
	})
	t.Run("ReplicaWatch", func(t *testing.T) {
		a, b := replicaPair(t)
		testReplicaWatch(t, a, b)
	})
}

// --- helpers ---

func policy(name string, origins ...string) *corsdv1.Policy {
	p := &corsdv1.Policy{
		Name:           name,
		Description:    "test policy " + name,
		AllowedMethods: []string{"GET", "PUT"},
		MaxAge:         durationpb.New(10 * time.Minute),
		Mode:           corsdv1.Mode_MODE_ENFORCE,
	}
	for _, o := range origins {
		p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: o})
	}
	return p
}

func name(i int) string { return fmt.Sprintf("policies/p%04d", i) }

func mustCreate(t *testing.T, s store.Store, p *corsdv1.Policy) *corsdv1.Policy {
	t.Helper()
	got, err := s.Create(t.Context(), p)
	if err != nil {
		t.Fatalf("Create(%q) = %v", p.GetName(), err)
	}
	return got
}

func mustRevision(t *testing.T, s store.Store) int64 {
	t.Helper()
	rev, err := s.Revision(t.Context())
	if err != nil {
		t.Fatalf("Revision() = %v", err)
	}
	return rev
}

// setDescription is a MutateFunc.
func setDescription(d string) store.MutateFunc {
	return func(p *corsdv1.Policy) error {
		p.Description = d
		return nil
	}
}

// state is everything a failed write must leave alone.
type state struct {
	Revision int64
	Policies []*corsdv1.Policy
	Changes  []*corsdv1.Change
}

func capture(t *testing.T, s store.Store) state {
	t.Helper()
	st := state{Revision: mustRevision(t, s), Policies: listAll(t, s, 1000)}
	var err error
	if st.Changes, err = s.Changes(t.Context(), store.ChangesQuery{Limit: 1000}); err != nil {
		t.Fatalf("Changes() = %v", err)
	}
	return st
}

func assertUnchanged(t *testing.T, s store.Store, before state) {
	t.Helper()
	if diff := cmp.Diff(before, capture(t, s), protocmp.Transform()); diff != "" {
		t.Errorf("a failed write changed the store (-before +after):\n%s", diff)
	}
}

func listAll(t *testing.T, s store.Store, pageSize int) []*corsdv1.Policy {
	t.Helper()
	var all []*corsdv1.Policy
	token := ""
	for range 10_000 {
		page, err := s.List(t.Context(), pageSize, token)
		if err != nil {
			t.Fatalf("List(%d, %q) = %v", pageSize, token, err)
		}
		all = append(all, page.Policies...)
		if page.NextPageToken == "" {
			return all
		}
		token = page.NextPageToken
	}
	t.Fatal("List never returned an empty next_page_token")
	return nil
}

func nextEvent(t *testing.T, w store.Watch) store.Event {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatalf("watch closed early: %v", w.Err())
		}
		return ev
	case <-time.After(eventTimeout):
		t.Fatalf("no watch event within %s", eventTimeout)
	}
	return store.Event{}
}

// waitClosed drains w until it closes and returns Err.
func waitClosed(t *testing.T, w store.Watch) error {
	t.Helper()
	deadline := time.After(eventTimeout)
	for {
		select {
		case _, ok := <-w.Events():
			if !ok {
				return w.Err()
			}
		case <-deadline:
			t.Fatalf("watch not closed within %s", eventTimeout)
		}
	}
}

func wantErr(t *testing.T, call string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s = %v, want %v", call, err, want)
	}
}

// --- CRUD ---

func testCreateGet(t *testing.T, s store.Store) {
	ctx := t.Context()
	in := policy("policies/a", "https://a.example")
	in.Revision, in.Etag = 99, "bogus" // output only: ignored
	in.CreateTime = timestamppb.New(time.Unix(1, 0))
	orig := proto.Clone(in)
	got, err := s.Create(ctx, in)
	if err != nil {
		t.Fatalf("Create() = %v", err)
	}
	if !proto.Equal(in, orig) {
		t.Error("Create modified its argument")
	}
	if got.GetRevision() != 1 || mustRevision(t, s) != 1 {
		t.Errorf("Create().revision = %d, Revision() = %d, want 1", got.GetRevision(), mustRevision(t, s))
	}
	if got.GetEtag() == "" || got.GetEtag() == "bogus" {
		t.Errorf("Create().etag = %q, want a fresh etag", got.GetEtag())
	}
	if got.GetCreateTime() == nil || !proto.Equal(got.GetCreateTime(), got.GetUpdateTime()) || got.GetCreateTime().AsTime().Unix() == 1 {
		t.Errorf("Create() times = %v, %v, want both set to the write time", got.GetCreateTime(), got.GetUpdateTime())
	}
	want := proto.Clone(in).(*corsdv1.Policy)
	want.Revision, want.Etag, want.CreateTime, want.UpdateTime = got.GetRevision(), got.GetEtag(), got.GetCreateTime(), got.GetUpdateTime()
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("Create() mismatch (-want +got):\n%s", diff)
	}
	read, err := s.Get(ctx, "policies/a")
	if err != nil {
		t.Fatalf("Get() = %v", err)
	}
	if diff := cmp.Diff(got, read, protocmp.Transform()); diff != "" {
		t.Errorf("Get() mismatch (-want +got):\n%s", diff)
	}
	// The caller owns what it gets back.
	read.Description = "changed by the caller"
	again, _ := s.Get(ctx, "policies/a")
	if again.GetDescription() != in.GetDescription() {
		t.Error("changing a policy returned by Get changed the store")
	}
}

func testCreateErrors(t *testing.T, s store.Store) {
	mustCreate(t, s, policy("policies/a", "https://a.example"))
	before := capture(t, s)
	tests := []struct {
		name string
		p    *corsdv1.Policy
		want error
	}{
		{name: "exists", p: policy("policies/a", "https://other.example"), want: store.ErrExists},
		{name: "no name", p: policy(""), want: store.ErrInvalidArgument},
		{name: "nil policy", p: nil, want: store.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Create(t.Context(), tt.p)
			wantErr(t, "Create()", err, tt.want)
			assertUnchanged(t, s, before)
		})
	}
}

func testGetNotFound(t *testing.T, s store.Store) {
	_, err := s.Get(t.Context(), "policies/missing")
	wantErr(t, "Get(missing)", err, store.ErrNotFound)
}

func testUpdate(t *testing.T, s store.Store) {
	ctx := t.Context()
	created := mustCreate(t, s, policy("policies/a", "https://a.example"))
	mustCreate(t, s, policy("policies/b"))
	got, err := s.Update(ctx, "policies/a", store.Precondition{Etag: created.GetEtag()}, func(p *corsdv1.Policy) error {
		p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: "https://b.example"})
		// Name and output-only fields are not the mutator's to change.
		p.Name, p.Revision, p.Etag = "policies/other", 1000, "mine"
		p.CreateTime, p.UpdateTime = timestamppb.New(time.Unix(5, 0)), nil
		return nil
	})
	if err != nil {
		t.Fatalf("Update() = %v", err)
	}
	if got.GetName() != "policies/a" || got.GetRevision() != 3 || got.GetEtag() == created.GetEtag() || got.GetEtag() == "mine" {
		t.Errorf("Update() = name %q revision %d etag %q; want policies/a, 3, a new etag", got.GetName(), got.GetRevision(), got.GetEtag())
	}
	if !proto.Equal(got.GetCreateTime(), created.GetCreateTime()) {
		t.Errorf("Update().create_time = %v, want %v (kept)", got.GetCreateTime(), created.GetCreateTime())
	}
	if got.GetUpdateTime() == nil || got.GetUpdateTime().AsTime().Before(created.GetUpdateTime().AsTime()) {
		t.Errorf("Update().update_time = %v, want ≥ %v", got.GetUpdateTime(), created.GetUpdateTime())
	}
	if n := len(got.GetOrigins()); n != 2 {
		t.Errorf("Update() has %d origins, want 2", n)
	}
	read, err := s.Get(ctx, "policies/a")
	if err != nil {
		t.Fatalf("Get() = %v", err)
	}
	if diff := cmp.Diff(got, read, protocmp.Transform()); diff != "" {
		t.Errorf("Get() after Update mismatch (-want +got):\n%s", diff)
	}
	if _, err := s.Get(ctx, "policies/other"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(policies/other) = %v, want ErrNotFound (mutate cannot rename)", err)
	}
	// Revision precondition.
	if _, err := s.Update(ctx, "policies/a", store.Precondition{Revision: got.GetRevision()}, setDescription("by revision")); err != nil {
		t.Errorf("Update() with the current revision = %v", err)
	}
}

func testUpdateErrors(t *testing.T, s store.Store) {
	ctx := t.Context()
	first := mustCreate(t, s, policy("policies/a"))
	cur, err := s.Update(ctx, "policies/a", store.Precondition{}, setDescription("second"))
	if err != nil {
		t.Fatalf("Update() = %v", err)
	}
	errMutate := errors.New("mutate refused")
	before := capture(t, s)
	tests := []struct {
		name   string
		target string
		pre    store.Precondition
		mutate store.MutateFunc
		want   error
	}{
		{name: "stale etag", target: "policies/a", pre: store.Precondition{Etag: first.GetEtag()}, mutate: setDescription("x"), want: store.ErrConflict},
		{name: "unknown etag", target: "policies/a", pre: store.Precondition{Etag: "no-such-etag"}, mutate: setDescription("x"), want: store.ErrConflict},
		{name: "stale revision", target: "policies/a", pre: store.Precondition{Revision: first.GetRevision()}, mutate: setDescription("x"), want: store.ErrConflict},
		{name: "etag ok, revision stale", target: "policies/a", pre: store.Precondition{Etag: cur.GetEtag(), Revision: first.GetRevision()}, mutate: setDescription("x"), want: store.ErrConflict},
		{name: "not found", target: "policies/missing", mutate: setDescription("x"), want: store.ErrNotFound},
		{name: "mutate error", target: "policies/a", pre: store.Precondition{Etag: cur.GetEtag()}, mutate: func(p *corsdv1.Policy) error {
			p.Description = "half-done"
			return errMutate
		}, want: errMutate},
		{name: "nil mutate", target: "policies/a", want: store.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Update(t.Context(), tt.target, tt.pre, tt.mutate)
			wantErr(t, "Update()", err, tt.want)
			assertUnchanged(t, s, before)
		})
	}
}

func testDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := mustCreate(t, s, policy("policies/a"))
	mustCreate(t, s, policy("policies/b"))
	rev, err := s.Delete(ctx, "policies/a", store.Precondition{Etag: a.GetEtag(), Revision: a.GetRevision()})
	if err != nil {
		t.Fatalf("Delete() = %v", err)
	}
	if rev != 3 || mustRevision(t, s) != 3 {
		t.Errorf("Delete() = %d, Revision() = %d, want 3", rev, mustRevision(t, s))
	}
	if _, err := s.Get(ctx, "policies/a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get() after Delete = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "policies/b"); err != nil {
		t.Errorf("Get(policies/b) = %v; Delete removed the wrong policy", err)
	}
}

func testDeleteErrors(t *testing.T, s store.Store) {
	first := mustCreate(t, s, policy("policies/a"))
	if _, err := s.Update(t.Context(), "policies/a", store.Precondition{}, setDescription("second")); err != nil {
		t.Fatalf("Update() = %v", err)
	}
	before := capture(t, s)
	tests := []struct {
		name   string
		target string
		pre    store.Precondition
		want   error
	}{
		{name: "stale etag", target: "policies/a", pre: store.Precondition{Etag: first.GetEtag()}, want: store.ErrConflict},
		{name: "stale revision", target: "policies/a", pre: store.Precondition{Revision: first.GetRevision()}, want: store.ErrConflict},
		{name: "not found", target: "policies/missing", want: store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Delete(t.Context(), tt.target, tt.pre)
			wantErr(t, "Delete()", err, tt.want)
			assertUnchanged(t, s, before)
		})
	}
}

func testRecreate(t *testing.T, s store.Store) {
	ctx := t.Context()
	old := mustCreate(t, s, policy("policies/a"))
	if _, err := s.Delete(ctx, "policies/a", store.Precondition{}); err != nil {
		t.Fatalf("Delete() = %v", err)
	}
	again := mustCreate(t, s, policy("policies/a"))
	if again.GetEtag() == old.GetEtag() || again.GetRevision() != 3 {
		t.Errorf("re-created policy has etag %q revision %d; want an etag other than %q and revision 3", again.GetEtag(), again.GetRevision(), old.GetEtag())
	}
	// An etag of the deleted incarnation must not match the new one.
	_, err := s.Update(ctx, "policies/a", store.Precondition{Etag: old.GetEtag()}, setDescription("x"))
	wantErr(t, "Update(old etag)", err, store.ErrConflict)
}

func testCanceledContext(t *testing.T, s store.Store) {
	mustCreate(t, s, policy("policies/a"))
	before := capture(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := []struct {
		name string
		call func() error
	}{
		{"Create", func() error { _, err := s.Create(ctx, policy("policies/b")); return err }},
		{"Update", func() error {
			_, err := s.Update(ctx, "policies/a", store.Precondition{}, setDescription("x"))
			return err
		}},
		{"Delete", func() error { _, err := s.Delete(ctx, "policies/a", store.Precondition{}); return err }},
		{"Watch", func() error { _, err := s.Watch(ctx, 0); return err }},
		{"Backup", func() error { _, err := s.Backup(ctx, io.Discard); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			wantErr(t, c.name+"(canceled)", c.call(), context.Canceled)
			assertUnchanged(t, s, before)
		})
	}
}

func testMonotonicRevisions(t *testing.T, s store.Store) {
	ctx := t.Context()
	last := mustRevision(t, s)
	if last != 0 {
		t.Fatalf("Revision() of an empty store = %d, want 0", last)
	}
	check := func(op string, rev int64) {
		t.Helper()
		if rev != last+1 {
			t.Errorf("%s: revision %d, want %d", op, rev, last+1)
		}
		if cur := mustRevision(t, s); cur != rev {
			t.Errorf("%s: Revision() = %d, want %d", op, cur, rev)
		}
		last = rev
	}
	for i := range 5 {
		check("create", mustCreate(t, s, policy(name(i))).GetRevision())
	}
	for i := range 5 {
		p, err := s.Update(ctx, name(i), store.Precondition{}, setDescription("v2"))
		if err != nil {
			t.Fatalf("Update() = %v", err)
		}
		check("update", p.GetRevision())
		// A failed write consumes no revision.
		if _, err := s.Create(ctx, policy(name(i))); !errors.Is(err, store.ErrExists) {
			t.Fatalf("Create(existing) = %v", err)
		}
	}
	for i := range 5 {
		rev, err := s.Delete(ctx, name(i), store.Precondition{})
		if err != nil {
			t.Fatalf("Delete() = %v", err)
		}
		check("delete", rev)
	}
}

// --- List ---

func testList(t *testing.T, s store.Store) {
	const n = 25
	for _, i := range rand.Perm(n) { //nolint:gosec // G404: a shuffle, not a secret
		mustCreate(t, s, policy(name(i)))
	}
	for _, size := range []int{1, 7, 25, 26, 0, 5000} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			if size == 0 {
				page, err := s.List(t.Context(), 0, "")
				if err != nil || len(page.Policies) != n || page.NextPageToken != "" {
					t.Fatalf("List(0) = %d policies, token %q, %v; want all %d (default size 100)", len(page.Policies), page.NextPageToken, err, n)
				}
				return
			}
			var pages int
			var got []string
			token := ""
			for {
				page, err := s.List(t.Context(), size, token)
				if err != nil {
					t.Fatalf("List() = %v", err)
				}
				if len(page.Policies) > size {
					t.Fatalf("List(%d) returned %d policies", size, len(page.Policies))
				}
				pages++
				for _, p := range page.Policies {
					got = append(got, p.GetName())
				}
				if page.NextPageToken == "" {
					break
				}
				token = page.NextPageToken
			}
			var want []string
			for i := range n {
				want = append(want, name(i))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("List(%d) names mismatch (-want +got):\n%s", size, diff)
			}
			if wantPages := max((n+size-1)/size, 1); pages > wantPages+1 || pages < wantPages {
				t.Errorf("List(%d) took %d pages, want %d", size, pages, wantPages)
			}
		})
	}
	t.Run("first page", func(t *testing.T) {
		page, err := s.List(t.Context(), 10, "")
		if err != nil || len(page.Policies) != 10 || page.NextPageToken == "" {
			t.Errorf("List(10) = %d, %q, %v", len(page.Policies), page.NextPageToken, err)
		}
	})
}

func testListErrors(t *testing.T, s store.Store) {
	mustCreate(t, s, policy("policies/a"))
	tests := []struct {
		name  string
		size  int
		token string
	}{
		{name: "negative size", size: -1},
		{name: "garbage token", size: 10, token: "not a token!"},
		{name: "base64 of garbage", size: 10, token: "Zm9vYmFy"}, //nolint:gosec // G101: a page token, not a credential
		{name: "truncated token", size: 10, token: "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.List(t.Context(), tt.size, tt.token)
			wantErr(t, fmt.Sprintf("List(%d, %q)", tt.size, tt.token), err, store.ErrInvalidArgument)
		})
	}
}

func testListTokenSurvivesWrites(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, i := range []int{1, 3, 5, 7, 9} {
		mustCreate(t, s, policy(name(i)))
	}
	page, err := s.List(ctx, 2, "")
	if err != nil {
		t.Fatalf("List() = %v", err)
	}
	// The page ended at p0003. Delete it, add names before and after it.
	if _, err := s.Delete(ctx, name(3), store.Precondition{}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, policy(name(0)))
	mustCreate(t, s, policy(name(4)))
	var got []string
	for _, p := range listFrom(t, s, 2, page.NextPageToken) {
		got = append(got, p.GetName())
	}
	want := []string{name(4), name(5), name(7), name(9)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pages after a token mismatch (-want +got):\n%s", diff)
	}
}

func listFrom(t *testing.T, s store.Store, size int, token string) []*corsdv1.Policy {
	t.Helper()
	var all []*corsdv1.Policy
	for {
		page, err := s.List(t.Context(), size, token)
		if err != nil {
			t.Fatalf("List() = %v", err)
		}
		all = append(all, page.Policies...)
		if page.NextPageToken == "" {
			return all
		}
		token = page.NextPageToken
	}
}

// --- change log ---

func testChangeLog(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := store.WithActor(ctx, "alice")
	created, err := s.Create(alice, policy("policies/a", "https://a.example"))
	if err != nil {
		t.Fatal(err)
	}
	updated, err := s.Update(store.WithActor(ctx, "bob"), "policies/a", store.Precondition{}, setDescription("v2"))
	if err != nil {
		t.Fatal(err)
	}
	delRev, err := s.Delete(ctx, "policies/a", store.Precondition{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Changes(ctx, store.ChangesQuery{})
	if err != nil {
		t.Fatalf("Changes() = %v", err)
	}
	want := []*corsdv1.Change{
		{Revision: 1, Actor: "alice", Kind: corsdv1.ChangeKind_CHANGE_KIND_CREATE, Name: "policies/a", After: created},
		{Revision: 2, Actor: "bob", Kind: corsdv1.ChangeKind_CHANGE_KIND_UPDATE, Name: "policies/a", Before: created, After: updated},
		{Revision: delRev, Actor: "unknown", Kind: corsdv1.ChangeKind_CHANGE_KIND_DELETE, Name: "policies/a", Before: updated},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform(), protocmp.IgnoreFields(&corsdv1.Change{}, "change_time")); diff != "" {
		t.Errorf("Changes() mismatch (-want +got):\n%s", diff)
	}
	for i, c := range got {
		if c.GetChangeTime() == nil {
			t.Errorf("change %d has no change_time", i)
		}
	}
	if len(got) >= 2 && !proto.Equal(got[1].GetChangeTime(), updated.GetUpdateTime()) {
		t.Errorf("change_time %v != update_time %v", got[1].GetChangeTime(), updated.GetUpdateTime())
	}
}

func testChangesQuery(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Revisions 1..12: creates of a, b, c, then updates round-robin.
	names := []string{"policies/a", "policies/b", "policies/c"}
	for _, n := range names {
		mustCreate(t, s, policy(n))
	}
	for i := range 9 {
		if _, err := s.Update(ctx, names[i%3], store.Precondition{}, setDescription(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	revs := func(cs []*corsdv1.Change) []int64 {
		var out []int64
		for _, c := range cs {
			out = append(out, c.GetRevision())
		}
		return out
	}
	tests := []struct {
		name string
		q    store.ChangesQuery
		want []int64
	}{
		{name: "all", q: store.ChangesQuery{}, want: []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
		{name: "since", q: store.ChangesQuery{Since: 9}, want: []int64{10, 11, 12}},
		{name: "since last", q: store.ChangesQuery{Since: 12}, want: nil},
		{name: "since future", q: store.ChangesQuery{Since: 100}, want: nil},
		{name: "limit", q: store.ChangesQuery{Since: 2, Limit: 3}, want: []int64{3, 4, 5}},
		{name: "name", q: store.ChangesQuery{Name: "policies/b"}, want: []int64{2, 5, 8, 11}},
		{name: "name since limit", q: store.ChangesQuery{Name: "policies/b", Since: 5, Limit: 1}, want: []int64{8}},
		{name: "unknown name", q: store.ChangesQuery{Name: "policies/z"}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Changes(ctx, tt.q)
			if err != nil {
				t.Fatalf("Changes(%+v) = %v", tt.q, err)
			}
			if diff := cmp.Diff(tt.want, revs(got)); diff != "" {
				t.Errorf("Changes(%+v) mismatch (-want +got):\n%s", tt.q, diff)
			}
		})
	}
	t.Run("paging by since", func(t *testing.T) {
		var all []int64
		since := int64(0)
		for {
			page, err := s.Changes(ctx, store.ChangesQuery{Since: since, Limit: 5})
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			all = append(all, revs(page)...)
			since = page[len(page)-1].GetRevision()
		}
		if len(all) != 12 || all[0] != 1 || all[11] != 12 {
			t.Errorf("paged changes = %v, want 1..12", all)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		for _, q := range []store.ChangesQuery{{Since: -1}, {Limit: -1}} {
			_, err := s.Changes(ctx, q)
			wantErr(t, fmt.Sprintf("Changes(%+v)", q), err, store.ErrInvalidArgument)
		}
	})
}

// testNoLostUpdate runs read-modify-write loops with etags from several
// goroutines on one policy: every successful write must build on the
// previous one.
func testNoLostUpdate(t *testing.T, s store.Store) {
	const workers, perWorker = 8, 10
	ctx := t.Context()
	mustCreate(t, s, policy("policies/counter"))
	var (
		wg        sync.WaitGroup
		successes atomic.Int64
		conflicts atomic.Int64
	)
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for done := 0; done < perWorker; {
				cur, err := s.Get(ctx, "policies/counter")
				if err != nil {
					errs <- err
					return
				}
				n := len(cur.GetOrigins())
				_, err = s.Update(ctx, "policies/counter", store.Precondition{Etag: cur.GetEtag()}, func(p *corsdv1.Policy) error {
					p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: fmt.Sprintf("https://o%d.example", n)})
					return nil
				})
				switch {
				case errors.Is(err, store.ErrConflict):
					conflicts.Add(1)
				case err != nil:
					errs <- err
					return
				default:
					successes.Add(1)
					done++
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("worker: %v", err)
	}
	final, err := s.Get(ctx, "policies/counter")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := int64(len(final.GetOrigins())), successes.Load(); got != want || want != workers*perWorker {
		t.Errorf("final policy has %d origins after %d successful writes, want %d", got, want, workers*perWorker)
	}
	for i, o := range final.GetOrigins() {
		if want := fmt.Sprintf("https://o%d.example", i); o.GetPattern() != want {
			t.Fatalf("origin %d = %q, want %q (a write was lost or duplicated)", i, o.GetPattern(), want)
		}
	}
	changes, err := s.Changes(ctx, store.ChangesQuery{Name: "policies/counter", Since: 1, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != workers*perWorker {
		t.Fatalf("change log has %d updates, want %d", len(changes), workers*perWorker)
	}
	for i, c := range changes {
		if n := len(c.GetAfter().GetOrigins()); n != i+1 || len(c.GetBefore().GetOrigins()) != i {
			t.Errorf("change %d (revision %d) goes from %d to %d origins, want %d to %d", i, c.GetRevision(), len(c.GetBefore().GetOrigins()), n, i, i+1)
		}
	}
	t.Logf("%d writes, %d conflicts retried", successes.Load(), conflicts.Load())
}

// --- watch ---

func testWatchFromZero(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, policy("policies/a"))
	b := mustCreate(t, s, policy("policies/b"))
	if _, err := s.Delete(ctx, "policies/a", store.Precondition{}); err != nil {
		t.Fatal(err)
	}
	c := mustCreate(t, s, policy("policies/c"))
	w, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatalf("Watch(0) = %v", err)
	}
	want := []store.Event{
		{Type: store.EventSnapshot, Revision: b.GetRevision(), Name: "policies/b", Policy: b},
		{Type: store.EventSnapshot, Revision: c.GetRevision(), Name: "policies/c", Policy: c},
		{Type: store.EventSynced, Revision: 4},
	}
	var got []store.Event
	for range want {
		got = append(got, nextEvent(t, w))
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("initial events mismatch (-want +got):\n%s", diff)
	}
	b2, err := s.Update(ctx, "policies/b", store.Precondition{}, setDescription("v2"))
	if err != nil {
		t.Fatal(err)
	}
	delRev, err := s.Delete(ctx, "policies/c", store.Precondition{})
	if err != nil {
		t.Fatal(err)
	}
	a2 := mustCreate(t, s, policy("policies/a"))
	want = []store.Event{
		{Type: store.EventPut, Revision: 5, Name: "policies/b", Policy: b2},
		{Type: store.EventDelete, Revision: delRev, Name: "policies/c"},
		{Type: store.EventPut, Revision: 7, Name: "policies/a", Policy: a2},
	}
	got = nil
	for range want {
		got = append(got, nextEvent(t, w))
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("live events mismatch (-want +got):\n%s", diff)
	}
}

func testWatchFromRevision(t *testing.T, s store.Store) {
	ctx := t.Context()
	for i := range 6 {
		mustCreate(t, s, policy(name(i)))
	}
	w, err := s.Watch(ctx, 3)
	if err != nil {
		t.Fatalf("Watch(3) = %v", err)
	}
	for i := 6; i < 9; i++ {
		mustCreate(t, s, policy(name(i)))
	}
	if _, err := s.Delete(ctx, name(0), store.Precondition{}); err != nil {
		t.Fatal(err)
	}
	for rev := int64(4); rev <= 10; rev++ {
		ev := nextEvent(t, w)
		wantType, wantName := store.EventPut, name(int(rev-1))
		if rev == 10 {
			wantType, wantName = store.EventDelete, name(0)
		}
		if ev.Revision != rev || ev.Type != wantType || ev.Name != wantName {
			t.Fatalf("event = {%v %d %q}, want {%v %d %q}", ev.Type, ev.Revision, ev.Name, wantType, rev, wantName)
		}
		if wantType == store.EventPut && (ev.Policy.GetName() != wantName || ev.Policy.GetRevision() != rev) {
			t.Errorf("event %d carries policy %q revision %d", rev, ev.Policy.GetName(), ev.Policy.GetRevision())
		}
		if wantType == store.EventDelete && ev.Policy != nil {
			t.Errorf("delete event carries a policy")
		}
	}
}

func testWatchFutureRevision(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, policy(name(0)))
	w, err := s.Watch(ctx, 3)
	if err != nil {
		t.Fatalf("Watch(3) with revision 1 = %v, want a watch that waits", err)
	}
	for i := 1; i < 5; i++ {
		mustCreate(t, s, policy(name(i)))
	}
	ev := nextEvent(t, w)
	if ev.Revision != 4 || ev.Name != name(3) {
		t.Errorf("first event = {%d %q}, want {4 %q}", ev.Revision, ev.Name, name(3))
	}
}

// watchCollector reads a watch in the background, resuming after
// ErrWatchTooSlow as the contract says, and checks order on the way.
type watchCollector struct {
	t      *testing.T
	s      store.Store
	ctx    context.Context
	since  int64
	mu     sync.Mutex
	last   int64 // revision of the last change event
	synced bool
	state  map[string]*corsdv1.Policy
	err    error
	resume int
	done   chan struct{}
}

func collect(t *testing.T, ctx context.Context, s store.Store, since int64) *watchCollector {
	t.Helper()
	c, err := startCollector(t, ctx, s, since)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startCollector is collect for goroutines other than the test's.
func startCollector(t *testing.T, ctx context.Context, s store.Store, since int64) (*watchCollector, error) {
	c := &watchCollector{t: t, s: s, ctx: ctx, since: since, last: since, state: map[string]*corsdv1.Policy{}, done: make(chan struct{})}
	w, err := s.Watch(ctx, since)
	if err != nil {
		return nil, fmt.Errorf("Watch(%d) = %w", since, err)
	}
	go c.run(w)
	return c, nil
}

func (c *watchCollector) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

func (c *watchCollector) run(w store.Watch) {
	defer close(c.done)
	for {
		for ev := range w.Events() {
			if err := c.apply(ev); err != nil {
				c.fail(err)
				return
			}
		}
		err := w.Err()
		if !errors.Is(err, store.ErrWatchTooSlow) {
			if !errors.Is(err, context.Canceled) {
				c.fail(fmt.Errorf("watch ended: %w", err))
			}
			return
		}
		c.mu.Lock()
		from := c.last
		c.resume++
		c.mu.Unlock()
		if w, err = c.s.Watch(c.ctx, from); err != nil {
			if !errors.Is(err, context.Canceled) {
				c.fail(fmt.Errorf("resume from %d: %w", from, err))
			}
			return
		}
	}
}

func (c *watchCollector) apply(ev store.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ev.Type {
	case store.EventSnapshot:
		if c.synced || c.since != 0 {
			return fmt.Errorf("snapshot event %q after sync or in a watch from %d", ev.Name, c.since)
		}
		c.state[ev.Name] = ev.Policy
		return nil
	case store.EventSynced:
		if c.synced || c.since != 0 {
			return fmt.Errorf("unexpected synced event at %d", ev.Revision)
		}
		c.synced, c.last = true, ev.Revision
		return nil
	}
	if c.since == 0 && !c.synced {
		return fmt.Errorf("change %d before the synced event", ev.Revision)
	}
	if ev.Revision != c.last+1 {
		return fmt.Errorf("change %d follows %d: a gap, a duplicate or out of order", ev.Revision, c.last)
	}
	c.last = ev.Revision
	switch ev.Type {
	case store.EventPut:
		if ev.Policy.GetName() != ev.Name || ev.Policy.GetRevision() != ev.Revision {
			return fmt.Errorf("put %d carries policy %q revision %d", ev.Revision, ev.Policy.GetName(), ev.Policy.GetRevision())
		}
		c.state[ev.Name] = ev.Policy
	case store.EventDelete:
		delete(c.state, ev.Name)
	default:
		return fmt.Errorf("unknown event type %d", ev.Type)
	}
	return nil
}

// waitFor waits until the collector has seen revision rev.
func (c *watchCollector) waitFor(rev int64) {
	c.t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		last, err := c.last, c.err
		c.mu.Unlock()
		if err != nil {
			c.t.Fatalf("watch from %d: %v", c.since, err)
		}
		if last >= rev {
			if last > rev {
				c.t.Fatalf("watch from %d reached %d, beyond the last revision %d", c.since, last, rev)
			}
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.mu.Lock()
	last := c.last
	c.mu.Unlock()
	c.t.Fatalf("watch from %d reached only revision %d within %s, want %d", c.since, last, eventTimeout, rev)
}

func testWatchConcurrent(t *testing.T, s store.Store) {
	const writers, perWriter = 4, 40
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for i := range 4 {
		mustCreate(t, s, policy(name(i)))
	}
	var mu sync.Mutex // guards collectors
	collectors := []*watchCollector{collect(t, ctx, s, 0), collect(t, ctx, s, mustRevision(t, s)), collect(t, ctx, s, 1)}
	more := func(since int64) error {
		c, err := startCollector(t, ctx, s, since)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		collectors = append(collectors, c)
		return nil
	}
	var wg sync.WaitGroup
	var written atomic.Int64
	errs := make(chan error, writers)
	for wr := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(wr), 1)) //nolint:gosec // G404: a reproducible workload, not a secret
			own := fmt.Sprintf("policies/w%d", wr)
			exists := false
			for i := range perWriter {
				var err error
				switch r := rng.IntN(10); {
				case r < 2 && !exists:
					_, err = s.Create(ctx, policy(own))
					exists = true
				case r < 3 && exists:
					_, err = s.Delete(ctx, own, store.Precondition{})
					exists = false
				default:
					_, err = s.Update(ctx, name(rng.IntN(4)), store.Precondition{}, setDescription(fmt.Sprintf("w%d-%d", wr, i)))
				}
				if err != nil {
					errs <- err
					return
				}
				// Start more watchers while writes go on.
				switch n := written.Add(1); n {
				case writers * perWriter / 3:
					err = more(0)
				case writers * perWriter / 2:
					var rev int64
					if rev, err = s.Revision(ctx); err == nil {
						err = more(max(rev-10, 1))
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("writer: %v", err)
	}
	final := mustRevision(t, s)
	want := map[string]*corsdv1.Policy{}
	for _, p := range listAll(t, s, 100) {
		want[p.GetName()] = p
	}
	for _, c := range collectors {
		c.waitFor(final)
		if c.since == 0 {
			c.mu.Lock()
			diff := cmp.Diff(want, c.state, protocmp.Transform())
			c.mu.Unlock()
			if diff != "" {
				t.Errorf("state built from the watch from 0 mismatch (-store +watch):\n%s", diff)
			}
		}
		if c.resume > 0 {
			t.Logf("watch from %d resumed %d times", c.since, c.resume)
		}
	}
	cancel()
	for _, c := range collectors {
		<-c.done
		if c.err != nil {
			t.Errorf("watch from %d: %v", c.since, c.err)
		}
	}
}

// testWatchSlow checks that a watcher that stops reading is cut off with
// ErrWatchTooSlow while writers go on unhindered.
func testWatchSlow(t *testing.T, s store.Store, afterSynced bool) {
	ctx := t.Context()
	mustCreate(t, s, policy(name(0)))
	w, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if afterSynced {
		for ev := nextEvent(t, w); ev.Type != store.EventSynced; ev = nextEvent(t, w) {
		}
	}
	// A fast watcher beside it must not be affected.
	fast := collect(t, ctx, s, 0)
	const maxWrites = 20_000
	start := time.Now()
	var wg sync.WaitGroup
	var writes, slowest atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for w.Err() == nil && writes.Load() < maxWrites {
				t0 := time.Now()
				if _, err := s.Update(ctx, name(0), store.Precondition{}, setDescription(strconv.Itoa(g))); err != nil {
					t.Errorf("Update() = %v", err)
					return
				}
				d := int64(time.Since(t0))
				for old := slowest.Load(); d > old && !slowest.CompareAndSwap(old, d); old = slowest.Load() {
				}
				writes.Add(1)
			}
		})
	}
	wg.Wait()
	err = waitClosed(t, w)
	if !errors.Is(err, store.ErrWatchTooSlow) {
		t.Fatalf("slow watcher ended with %v after %d writes, want ErrWatchTooSlow", err, writes.Load())
	}
	t.Logf("slow watcher cut off after %d writes in %s; slowest write %s", writes.Load(), time.Since(start), time.Duration(slowest.Load()))
	if d := time.Duration(slowest.Load()); d > 5*time.Second {
		t.Errorf("a write took %s while a watcher was stuck", d)
	}
	fast.waitFor(mustRevision(t, s))
	fast.mu.Lock()
	defer fast.mu.Unlock()
	if fast.resume > 0 {
		t.Logf("the fast watcher resumed %d times", fast.resume)
	}
}

func testWatchCancel(t *testing.T, s store.Store) {
	for _, since := range []int64{0, 1} {
		t.Run(fmt.Sprint("since ", since), func(t *testing.T) {
			mustCreate(t, s, policy(name(int(since))))
			ctx, cancel := context.WithCancel(t.Context())
			w, err := s.Watch(ctx, since)
			if err != nil {
				t.Fatal(err)
			}
			if w.Err() != nil {
				t.Errorf("Err() of an open watch = %v, want nil", w.Err())
			}
			cancel()
			if err := waitClosed(t, w); !errors.Is(err, context.Canceled) {
				t.Errorf("Err() after cancel = %v, want context.Canceled", err)
			}
		})
	}
}

func testWatchInvalid(t *testing.T, s store.Store) {
	_, err := s.Watch(t.Context(), -1)
	wantErr(t, "Watch(-1)", err, store.ErrInvalidArgument)
}

func testClose(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, policy("policies/a"))
	w, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := waitClosed(t, w); !errors.Is(err, store.ErrClosed) {
		t.Errorf("watch after Close: Err() = %v, want ErrClosed", err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"Create", func() error { _, err := s.Create(ctx, policy("policies/b")); return err }},
		{"Get", func() error { _, err := s.Get(ctx, "policies/a"); return err }},
		{"List", func() error { _, err := s.List(ctx, 0, ""); return err }},
		{"Update", func() error {
			_, err := s.Update(ctx, "policies/a", store.Precondition{}, setDescription("x"))
			return err
		}},
		{"Delete", func() error { _, err := s.Delete(ctx, "policies/a", store.Precondition{}); return err }},
		{"Changes", func() error { _, err := s.Changes(ctx, store.ChangesQuery{}); return err }},
		{"Revision", func() error { _, err := s.Revision(ctx); return err }},
		{"Watch", func() error { _, err := s.Watch(ctx, 0); return err }},
		{"Backup", func() error { _, err := s.Backup(ctx, io.Discard); return err }},
	}
	for _, c := range calls {
		wantErr(t, c.name+" after Close", c.call(), store.ErrClosed)
	}
}

// --- compaction ---

func testChangesCompacted(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, policy("policies/a"))
	for i := range 11 {
		if _, err := s.Update(ctx, "policies/a", store.Precondition{}, setDescription(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	// Revisions 1..12 were written; 8..12 are kept.
	tests := []struct {
		name      string
		since     int64
		wantFirst int64
		wantErr   error
	}{
		{name: "since 0 starts at the oldest kept", since: 0, wantFirst: 8},
		{name: "since just before the oldest kept", since: 7, wantFirst: 8},
		{name: "since inside", since: 9, wantFirst: 10},
		{name: "since compacted", since: 6, wantErr: store.ErrCompacted},
		{name: "since long compacted", since: 1, wantErr: store.ErrCompacted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Changes(ctx, store.ChangesQuery{Since: tt.since})
			if tt.wantErr != nil {
				wantErr(t, fmt.Sprintf("Changes(since %d)", tt.since), err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Changes(since %d) = %v", tt.since, err)
			}
			if len(got) == 0 || got[0].GetRevision() != tt.wantFirst || got[len(got)-1].GetRevision() != 12 {
				t.Fatalf("Changes(since %d) = %d changes from %v, want %d..12", tt.since, len(got), got, tt.wantFirst)
			}
		})
	}
}

func testWatchCompacted(t *testing.T, s store.Store) {
	ctx := t.Context()
	for i := range 12 {
		mustCreate(t, s, policy(name(i)))
	}
	if _, err := s.Watch(ctx, 6); !errors.Is(err, store.ErrCompacted) {
		t.Errorf("Watch(6) = %v, want ErrCompacted", err)
	}
	w, err := s.Watch(ctx, 7)
	if err != nil {
		t.Fatalf("Watch(7) = %v", err)
	}
	for rev := int64(8); rev <= 12; rev++ {
		if ev := nextEvent(t, w); ev.Revision != rev {
			t.Fatalf("Watch(7) event revision %d, want %d", ev.Revision, rev)
		}
	}
	// A resync from 0 always works.
	c := collect(t, ctx, s, 0)
	c.waitFor(12)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.state) != 12 {
		t.Errorf("snapshot has %d policies, want 12", len(c.state))
	}
}
