package storetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/corsd/corsd/internal/backupfmt"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// Compare checks that to holds exactly the state of from: revision,
// policies (with their etags and times) and retained change log. Backends'
// tests use it to check a restore across backends.
func Compare(t *testing.T, from, to store.Store) {
	t.Helper()
	want, got := captureAll(t, from), captureAll(t, to)
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("restored store mismatch (-backed up +restored):\n%s", diff)
	}
}

// captureAll is capture with the whole change log.
func captureAll(t *testing.T, s store.Store) state {
	t.Helper()
	st := state{Revision: mustRevision(t, s), Policies: listAll(t, s, 1000)}
	var since int64
	for {
		page, err := s.Changes(t.Context(), store.ChangesQuery{Since: since, Limit: 1000})
		if err != nil {
			t.Fatalf("Changes(since %d) = %v", since, err)
		}
		if len(page) == 0 {
			return st
		}
		st.Changes = append(st.Changes, page...)
		since = page[len(page)-1].GetRevision()
	}
}

// testBackup takes backups of s while a writer goes on, and checks each by
// restoring it into a fresh store: the restored state is the source's at
// the backup's revision (its change log up to it, and the policies that
// replaying that log gives), and it goes on from there. A last backup
// taken at rest must restore to exactly the source's state.
func testBackup(t *testing.T, s, fresh store.Store, concurrent bool) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for i := range 20 {
		mustCreate(t, s, withHosts(policy(name(i), "https://a.example", "https://b.example"), "h"+strconv.Itoa(i)+".example.com"))
	}
	var wg sync.WaitGroup
	if !concurrent {
		// Compacted: the change log the rollback below needs is gone, so
		// back up at rest and compare exactly.
		var buf bytes.Buffer
		if _, err := s.Backup(ctx, &buf); err != nil {
			t.Fatalf("Backup() = %v", err)
		}
		if err := fresh.Restore(ctx, &buf); err != nil {
			t.Fatalf("Restore() = %v", err)
		}
		Compare(t, s, fresh)
		return
	}
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			if _, err := s.Update(store.WithActor(ctx, "writer"), name(i%20), store.Precondition{}, setDescription(strconv.Itoa(i))); err != nil && ctx.Err() == nil {
				t.Errorf("Update() during backup = %v", err)
				return
			}
		}
	})
	var backups [][]byte
	for range 3 {
		var buf bytes.Buffer
		n, err := s.Backup(ctx, &buf)
		if err != nil {
			t.Fatalf("Backup() = %v", err)
		}
		if n != int64(buf.Len()) {
			t.Errorf("Backup() = %d bytes, wrote %d", n, buf.Len())
		}
		backups = append(backups, buf.Bytes())
	}
	cancel()
	wg.Wait()
	source := captureAll(t, s)
	for i, b := range backups[:len(backups)-1] {
		sum, err := backupfmt.Verify(bytes.NewReader(b))
		if err != nil || sum.Header.GetRevision() < 20 {
			t.Errorf("backup %d: Verify() = %+v, %v", i, sum, err)
		}
	}
	if err := fresh.Restore(t.Context(), bytes.NewReader(backups[len(backups)-1])); err != nil {
		t.Fatalf("Restore() = %v", err)
	}
	got := captureAll(t, fresh)
	if got.Revision < 20 || got.Revision > source.Revision {
		t.Fatalf("restored revision %d, want within 20..%d", got.Revision, source.Revision)
	}
	// The restored log is the source's up to the backup's revision, from
	// the oldest change retained then.
	var wantLog []*corsdv1.Change
	for _, c := range source.Changes {
		if c.GetRevision() <= got.Revision && len(got.Changes) > 0 && c.GetRevision() >= got.Changes[0].GetRevision() {
			wantLog = append(wantLog, c)
		}
	}
	if len(got.Changes) == 0 || got.Changes[len(got.Changes)-1].GetRevision() != got.Revision {
		t.Errorf("restored change log does not end at the restored revision %d", got.Revision)
	}
	if diff := cmp.Diff(wantLog, got.Changes, protocmp.Transform()); diff != "" {
		t.Errorf("restored change log mismatch (-source +restored):\n%s", diff)
	}
	// The restored policies are the source's at that revision: the source's
	// current ones, rolled back by the changes after it.
	want := map[string]*corsdv1.Policy{}
	for _, p := range source.Policies {
		want[p.GetName()] = p
	}
	for i := len(source.Changes) - 1; i >= 0 && source.Changes[i].GetRevision() > got.Revision; i-- {
		c := source.Changes[i]
		if c.GetBefore() != nil {
			want[c.GetName()] = c.GetBefore()
		} else {
			delete(want, c.GetName())
		}
	}
	gotMap := map[string]*corsdv1.Policy{}
	for _, p := range got.Policies {
		gotMap[p.GetName()] = p
	}
	if diff := cmp.Diff(want, gotMap, protocmp.Transform()); diff != "" {
		t.Errorf("restored policies are not the state at revision %d (-source +restored):\n%s", got.Revision, diff)
	}
	// The restored store goes on from the backup's revision, with its
	// host index.
	p, err := fresh.Update(store.WithActor(t.Context(), "after-restore"), name(0), store.Precondition{}, setDescription("after restore"))
	if err != nil || p.GetRevision() != got.Revision+1 {
		t.Errorf("Update() after restore = revision %d, %v; want %d", p.GetRevision(), err, got.Revision+1)
	}
	_, err = fresh.Create(t.Context(), withHosts(policy("policies/thief"), "h1.example.com"))
	wantHostConflict(t, "Create(a restored policy's host)", err, 0, name(1))

	// At rest, two backups of one state are the same bytes but for the
	// header's time.
	var buf bytes.Buffer
	if _, err := s.Backup(t.Context(), &buf); err != nil {
		t.Fatalf("Backup() = %v", err)
	}
	var again bytes.Buffer
	if _, err := s.Backup(t.Context(), &again); err != nil {
		t.Fatalf("Backup() = %v", err)
	}
	if !bytes.Equal(withoutHeaderTime(t, buf.Bytes()), withoutHeaderTime(t, again.Bytes())) {
		t.Error("two backups of one state differ beyond their header time")
	}
	canceled, stop := context.WithCancel(t.Context())
	stop()
	_, err = s.Backup(canceled, io.Discard)
	wantErr(t, "Backup(canceled)", err, context.Canceled)
}

// withoutHeaderTime returns the records of a backup, after its header.
func withoutHeaderTime(t *testing.T, b []byte) []byte {
	t.Helper()
	const magic = 8
	if len(b) < magic+1 {
		t.Fatalf("backup of %d bytes", len(b))
	}
	n, l := int(b[magic]), 1 // headers are short: one-byte varint
	if n >= 0x80 {
		t.Fatalf("backup header of %d+ bytes", n)
	}
	return b[magic+l+n:]
}

// testRestoreErrors checks that Restore refuses a store in use, and a
// damaged or truncated backup, writing nothing; and that a good backup
// restores to exactly the state backed up.
func testRestoreErrors(t *testing.T, s, fresh store.Store) {
	ctx := t.Context()
	mustCreate(t, s, withHosts(policy("policies/a"), "a.example.com"))
	mustCreate(t, s, policy("policies/b"))
	if _, err := s.Update(store.WithActor(ctx, "bob"), "policies/a", store.Precondition{}, setDescription("v2")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, "policies/b", store.Precondition{}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := s.Backup(ctx, &buf); err != nil {
		t.Fatalf("Backup() = %v", err)
	}
	good := buf.Bytes()

	before := capture(t, s)
	err := s.Restore(ctx, bytes.NewReader(good))
	wantErr(t, "Restore(into a store with data)", err, store.ErrNotEmpty)
	assertUnchanged(t, s, before)

	empty := capture(t, fresh)
	bad := map[string][]byte{
		"empty":              nil,
		"not a backup":       []byte("SQLite format 3\x00"),
		"truncated":          good[:len(good)-3],
		"trailer missing":    good[:len(good)/2],
		"data after trailer": append(bytes.Clone(good), 0),
		"newer format":       newerFormat(t, good),
	}
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			if err := fresh.Restore(t.Context(), bytes.NewReader(b)); !errors.Is(err, store.ErrInvalidArgument) {
				t.Errorf("Restore(%s) = %v, want ErrInvalidArgument", name, err)
			}
			assertUnchanged(t, fresh, empty)
		})
	}
	if err := fresh.Restore(ctx, bytes.NewReader(good)); err != nil {
		t.Fatalf("Restore(good) = %v", err)
	}
	Compare(t, s, fresh)
	// Watchers of the restored store see its state.
	c := collect(t, ctx, fresh, 0)
	c.waitFor(before.Revision)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.state) != 1 || !proto.Equal(c.state["policies/a"], before.Policies[0]) {
		t.Errorf("watch of the restored store = %v, want policies/a only", c.state)
	}
}

// newerFormat returns b with its header's format version raised to 2.
func newerFormat(t *testing.T, b []byte) []byte {
	t.Helper()
	out := bytes.Clone(b)
	// magic (8), header length (1), tag of format_version (0x08), value.
	if out[9] != 0x08 || out[10] != backupfmt.FormatVersion {
		t.Fatalf("unexpected header bytes % x", out[:12])
	}
	out[10] = backupfmt.FormatVersion + 1
	return out
}
