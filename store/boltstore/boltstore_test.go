package boltstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
	"github.com/corsd/corsd/store/storetest"
)

// openTemp opens a store in a fresh temporary file. Cleanup closes it and
// runs the bbolt consistency check on the file.
func openTemp(t testing.TB, opts ...Option) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "corsd.db")
	s, err := Open(path, opts...)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
		checkFile(t, path)
	})
	return s
}

// checkFile runs bbolt's consistency check on a closed database file.
func checkFile(t testing.TB, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Errorf("reopen %s for the consistency check: %v", path, err)
		return
	}
	defer func() { _ = db.Close() }()
	if err := db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}); err != nil {
		t.Errorf("consistency check of %s: %v", path, err)
	}
	if err := Verify(path); err != nil {
		t.Errorf("Verify(%s) = %v", path, err)
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Config{
		New: func(t *testing.T, o storetest.Options) store.Store {
			opts := []Option{WithWatchBuffer(o.WatchBuffer)}
			if o.MaxChanges > 0 {
				opts = append(opts, WithRetention(o.MaxChanges, 0))
			}
			return openTemp(t, opts...)
		},
	})
}

func testPolicy(name string, origins ...string) *corsdv1.Policy {
	p := &corsdv1.Policy{Name: name, Description: "test"}
	for _, o := range origins {
		p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: o})
	}
	return p
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestRetentionByAge(t *testing.T) {
	ctx := t.Context()
	clock := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := openTemp(t, WithRetention(0, time.Hour), WithClock(clock.Now))
	for i := range 3 { // revisions 1..3 at 00:00, 00:10, 00:20
		if _, err := s.Create(ctx, testPolicy(fmt.Sprintf("policies/p%d", i))); err != nil {
			t.Fatal(err)
		}
		clock.Advance(10 * time.Minute)
	}
	clock.Advance(45 * time.Minute) // 01:15: revisions 1 (00:00) and 2 (00:10) are older than an hour
	if _, err := s.Create(ctx, testPolicy("policies/p3")); err != nil {
		t.Fatal(err)
	}
	got, err := s.Changes(ctx, store.ChangesQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].GetRevision() != 3 || got[1].GetRevision() != 4 {
		t.Fatalf("Changes() after age compaction = %v, want revisions 3 and 4", got)
	}
	if _, err := s.Changes(ctx, store.ChangesQuery{Since: 1}); !errors.Is(err, store.ErrCompacted) {
		t.Errorf("Changes(since 1) = %v, want ErrCompacted", err)
	}
	// Everything is old, but the newest change is always kept.
	clock.Advance(24 * time.Hour)
	if _, err := s.Delete(ctx, "policies/p0", store.Precondition{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Changes(ctx, store.ChangesQuery{}); len(got) != 1 || got[0].GetRevision() != 5 {
		t.Errorf("Changes() = %v, want only revision 5", got)
	}
	if got, err := s.Changes(ctx, store.ChangesQuery{Since: 4}); err != nil || len(got) != 1 {
		t.Errorf("Changes(since 4) = %v, %v; want revision 5", got, err)
	}
}

func TestRetentionByCountAcrossReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "corsd.db")
	s, err := Open(path, WithRetention(3, 0))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := s.Create(ctx, testPolicy(fmt.Sprintf("policies/p%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path, WithRetention(3, 0))
	if _, err := s.Watch(ctx, 1); !errors.Is(err, store.ErrCompacted) {
		t.Errorf("Watch(1) after reopen = %v, want ErrCompacted", err)
	}
	if got, err := s.Changes(ctx, store.ChangesQuery{Since: 2}); err != nil || len(got) != 3 {
		t.Errorf("Changes(since 2) = %d changes, %v; want 3", len(got), err)
	}
}

func openAt(t *testing.T, path string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(path, opts...)
	if err != nil {
		t.Fatalf("Open(%s) = %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

func TestReopenKeepsEverything(t *testing.T) {
	ctx := store.WithActor(t.Context(), "tester")
	path := filepath.Join(t.TempDir(), "corsd.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Create(ctx, testPolicy("policies/a", "https://a.example"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, testPolicy("policies/b")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, "policies/b", store.Precondition{}); err != nil {
		t.Fatal(err)
	}
	changes, _ := s.Changes(ctx, store.ChangesQuery{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path)
	if rev, err := s.Revision(ctx); err != nil || rev != 3 {
		t.Errorf("Revision() after reopen = %d, %v; want 3", rev, err)
	}
	got, err := s.Get(ctx, "policies/a")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, got, protocmp.Transform()); diff != "" {
		t.Errorf("Get() after reopen mismatch (-want +got):\n%s", diff)
	}
	gotChanges, _ := s.Changes(ctx, store.ChangesQuery{})
	if diff := cmp.Diff(changes, gotChanges, protocmp.Transform()); diff != "" {
		t.Errorf("Changes() after reopen mismatch (-want +got):\n%s", diff)
	}
	if p, err := s.Create(ctx, testPolicy("policies/c")); err != nil || p.GetRevision() != 4 {
		t.Errorf("Create() after reopen = revision %d, %v; want 4", p.GetRevision(), err)
	}
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "corsd.db")
	s := openAt(t, path)
	_ = s
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("database file mode = %v, want 0600", mode)
	}
}

// writeBolt creates a bbolt file at path and runs fn in a transaction.
func writeBolt(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	random := make([]byte, 64<<10)
	_, _ = rand.Read(random)
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		want    error
		wantMsg string
	}{
		{
			name:    "random bytes",
			setup:   func(t *testing.T, path string) { mustWrite(t, path, random) },
			want:    ErrCorrupt,
			wantMsg: "corrupt or is not a bbolt database",
		},
		{
			name:    "small text file",
			setup:   func(t *testing.T, path string) { mustWrite(t, path, []byte("hello, world\n")) },
			want:    ErrCorrupt,
			wantMsg: "not a valid corsd database",
		},
		{
			name: "foreign bbolt file",
			setup: func(t *testing.T, path string) {
				writeBolt(t, path, func(tx *bolt.Tx) error {
					b, err := tx.CreateBucket([]byte("users"))
					if err != nil {
						return err
					}
					return b.Put([]byte("k"), []byte("v"))
				})
			},
			want:    ErrCorrupt,
			wantMsg: `without a "meta" bucket`,
		},
		{
			name: "meta without schema",
			setup: func(t *testing.T, path string) {
				writeBolt(t, path, func(tx *bolt.Tx) error {
					_, err := tx.CreateBucket(bucketMeta)
					return err
				})
			},
			want:    ErrCorrupt,
			wantMsg: "no valid schema version",
		},
		{
			name: "missing bucket",
			setup: func(t *testing.T, path string) {
				writeBolt(t, path, func(tx *bolt.Tx) error {
					if _, err := prepare(tx, path, nil); err != nil {
						return err
					}
					return tx.DeleteBucket(bucketChanges)
				})
			},
			want:    ErrCorrupt,
			wantMsg: `bucket "changes" is missing`,
		},
		{
			name: "newer schema",
			setup: func(t *testing.T, path string) {
				writeBolt(t, path, func(tx *bolt.Tx) error {
					if _, err := prepare(tx, path, nil); err != nil {
						return err
					}
					return tx.Bucket(bucketMeta).Put(keySchema, u64(7))
				})
			},
			wantMsg: "database schema version 7 is newer than this corsd supports (1); upgrade corsd",
		},
		{
			name:    "directory",
			setup:   func(t *testing.T, path string) { _ = os.Mkdir(path, 0o700) },
			wantMsg: "is a directory",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "corsd.db")
			tt.setup(t, path)
			s, err := Open(path)
			if err == nil {
				_ = s.Close()
				t.Fatal("Open() succeeded, want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Open() = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), path) {
				t.Errorf("Open() = %q, want a message naming %s and saying %q", err, path, tt.wantMsg)
			}
		})
	}
	t.Run("schema error type", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "corsd.db")
		writeBolt(t, path, func(tx *bolt.Tx) error {
			if _, err := prepare(tx, path, nil); err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Put(keySchema, u64(2))
		})
		_, err := Open(path)
		var se *SchemaVersionError
		if !errors.As(err, &se) || se.Found != 2 || se.Supported != 1 {
			t.Errorf("Open() = %v, want a *SchemaVersionError{2, 1}", err)
		}
	})
}

func mustWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOpenEmptyFile(t *testing.T) {
	// What a process that died between creating the file and its first
	// transaction leaves behind: bbolt initializes it.
	path := filepath.Join(t.TempDir(), "corsd.db")
	mustWrite(t, path, nil)
	s := openAt(t, path)
	if rev, err := s.Revision(t.Context()); err != nil || rev != 0 {
		t.Errorf("Revision() = %d, %v", rev, err)
	}
}

func TestMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "corsd.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(t.Context(), testPolicy("policies/a")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A future binary with schema 2 migrates the file...
	var ran int
	v2 := []migration{{from: 1, upgrade: func(tx *bolt.Tx) error {
		ran++
		return tx.Bucket(bucketMeta).Put([]byte("v2-marker"), []byte("yes"))
	}}}
	o := defaultOptions()
	o.migrations = v2
	s2, err := open(path, o)
	if err != nil {
		t.Fatalf("open with schema 2 = %v", err)
	}
	if _, err := s2.Get(t.Context(), "policies/a"); err != nil {
		t.Errorf("Get() after migration = %v", err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if ran != 1 {
		t.Errorf("migration ran %d times, want 1", ran)
	}
	// ...once.
	if s2, err = open(path, o); err != nil {
		t.Fatal(err)
	}
	_ = s2.Close()
	if ran != 1 {
		t.Errorf("migration ran again on a migrated file")
	}
	// And this binary (schema 1) refuses the migrated file.
	_, err = Open(path)
	var se *SchemaVersionError
	if !errors.As(err, &se) || se.Found != 2 {
		t.Errorf("Open(schema 2 file) = %v, want *SchemaVersionError", err)
	}

	// A failing migration leaves the file as it was.
	path2 := filepath.Join(t.TempDir(), "corsd.db")
	s, err = Open(path2)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	o.migrations = []migration{{from: 1, upgrade: func(tx *bolt.Tx) error {
		_ = tx.Bucket(bucketMeta).Put([]byte("half"), []byte("done"))
		return errors.New("disk on fire")
	}}}
	if _, err := open(path2, o); err == nil || !strings.Contains(err.Error(), "migrate schema 1 to 2") {
		t.Errorf("open with a failing migration = %v", err)
	}
	s = openAt(t, path2)
	_ = s
}

func TestBackupRestore(t *testing.T) {
	ctx := t.Context()
	src := openTemp(t)
	for i := range 40 {
		if _, err := src.Create(ctx, testPolicy(fmt.Sprintf("policies/p%02d", i), "https://a.example")); err != nil {
			t.Fatal(err)
		}
	}
	// Keep writing during the backup.
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; wctx.Err() == nil; i++ {
			name := fmt.Sprintf("policies/p%02d", i%40)
			if i%7 == 3 {
				_, _ = src.Delete(wctx, name, store.Precondition{})
				continue
			}
			if _, err := src.Update(wctx, name, store.Precondition{}, func(p *corsdv1.Policy) error {
				p.Description = fmt.Sprint(i)
				return nil
			}); errors.Is(err, store.ErrNotFound) {
				_, _ = src.Create(wctx, testPolicy(name))
			}
		}
	})
	time.Sleep(50 * time.Millisecond)
	dir := t.TempDir()
	backup := filepath.Join(dir, "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	n, err := src.BackupFile(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("Backup() = %v", err)
	}
	time.Sleep(20 * time.Millisecond)
	stop()
	wg.Wait()
	if fi, _ := os.Stat(backup); fi.Size() != n {
		t.Errorf("Backup() = %d, file has %d bytes", n, fi.Size())
	}

	restored := filepath.Join(dir, "restored.db")
	if err := Restore(backup, restored); err != nil {
		t.Fatalf("Restore() = %v", err)
	}
	checkFile(t, restored)
	dst := openAt(t, restored)
	rev, err := dst.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The backup is the source as of revision rev: replay the source's log.
	want := replay(t, src, rev)
	got := map[string]*corsdv1.Policy{}
	for _, p := range listAllPolicies(t, dst) {
		got[p.GetName()] = p
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("restored policies != source at revision %d (-want +got):\n%s", rev, diff)
	}
	srcRev, _ := src.Revision(ctx)
	t.Logf("backup at revision %d of %d, %d bytes", rev, srcRev, n)
	srcChanges, _ := src.Changes(ctx, store.ChangesQuery{Limit: int(rev)})
	dstChanges, _ := dst.Changes(ctx, store.ChangesQuery{Limit: int(rev)})
	if len(srcChanges) > int(rev) {
		srcChanges = srcChanges[:rev]
	}
	if diff := cmp.Diff(srcChanges, dstChanges, protocmp.Transform()); diff != "" {
		t.Errorf("restored change log mismatch (-want +got):\n%s", diff)
	}
}

// replay rebuilds the policies as of revision upTo from the change log.
func replay(t *testing.T, s *Store, upTo int64) map[string]*corsdv1.Policy {
	t.Helper()
	state := map[string]*corsdv1.Policy{}
	since := int64(0)
	for since < upTo {
		cs, err := s.Changes(t.Context(), store.ChangesQuery{Since: since, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			t.Fatalf("change log ends at %d, before %d", since, upTo)
		}
		for _, c := range cs {
			if c.GetRevision() > upTo {
				return state
			}
			if c.GetRevision() != since+1 {
				t.Fatalf("change log jumps from %d to %d", since, c.GetRevision())
			}
			since = c.GetRevision()
			if c.GetKind() == corsdv1.ChangeKind_CHANGE_KIND_DELETE {
				delete(state, c.GetName())
			} else {
				state[c.GetName()] = c.GetAfter()
			}
		}
	}
	return state
}

func listAllPolicies(t *testing.T, s store.Store) []*corsdv1.Policy {
	t.Helper()
	var all []*corsdv1.Policy
	token := ""
	for {
		page, err := s.List(t.Context(), 1000, token)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Policies...)
		if token = page.NextPageToken; token == "" {
			return all
		}
	}
}

func TestRestoreErrors(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := openTemp(t)
	if _, err := s.Create(ctx, testPolicy("policies/a")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := s.BackupFile(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.db")
	mustWrite(t, good, buf.Bytes())
	corrupt := filepath.Join(dir, "corrupt.db")
	damaged := bytes.Clone(buf.Bytes())
	for i := 2 * 4096; i < len(damaged); i += 97 { // keep the meta pages, wreck the rest
		damaged[i] ^= 0x5a
	}
	mustWrite(t, corrupt, damaged)
	existing := filepath.Join(dir, "existing.db")
	mustWrite(t, existing, []byte("precious"))

	tests := []struct {
		name   string
		backup string
		target string
		opts   []RestoreOption
		want   error
	}{
		{name: "target exists", backup: good, target: existing, want: ErrExists},
		{name: "corrupt backup", backup: corrupt, target: filepath.Join(dir, "new1.db"), want: ErrCorrupt},
		{name: "missing backup", backup: filepath.Join(dir, "nope.db"), target: filepath.Join(dir, "new2.db"), want: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Restore(tt.backup, tt.target, tt.opts...)
			if !errors.Is(err, tt.want) {
				t.Errorf("Restore() = %v, want %v", err, tt.want)
			}
		})
	}
	if data, _ := os.ReadFile(existing); string(data) != "precious" {
		t.Error("a refused Restore changed the existing file")
	}
	for _, name := range []string{"new1.db", "new2.db"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a failed Restore left %s behind", name)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "restore") {
			t.Errorf("a failed Restore left temporary file %s", e.Name())
		}
	}

	t.Run("overwrite", func(t *testing.T) {
		if err := Restore(good, existing, Overwrite()); err != nil {
			t.Fatalf("Restore(Overwrite) = %v", err)
		}
		r := openAt(t, existing)
		if _, err := r.Get(ctx, "policies/a"); err != nil {
			t.Errorf("Get() from the restored file = %v", err)
		}
		// The file is open now: a second restore over it must refuse.
		if err := Restore(good, existing, Overwrite()); !errors.Is(err, ErrLocked) {
			t.Errorf("Restore() over an open database = %v, want ErrLocked", err)
		}
	})
}

func TestPoliciesAreDeterministic(t *testing.T) {
	// Equal policies are stored as equal bytes.
	s := openTemp(t)
	p := testPolicy("policies/a", "https://a.example", "https://b.example")
	got, err := s.Create(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	var stored []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		stored = bytes.Clone(tx.Bucket(bucketPolicies).Get([]byte("policies/a")))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		again, err := proto.MarshalOptions{Deterministic: true}.Marshal(got)
		if err != nil || !bytes.Equal(stored, again) {
			t.Fatal("stored bytes differ from a deterministic encoding")
		}
	}
}

func TestWatchStalledDuringSnapshot(t *testing.T) {
	// A watcher whose reader never takes the snapshot is cut off (not kept
	// forever) once writes overflow its buffer, and writes go on.
	ctx := t.Context()
	s := openTemp(t, WithWatchBuffer(4))
	for i := range 10 {
		if _, err := s.Create(ctx, testPolicy(fmt.Sprintf("policies/p%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	w, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	<-w.Events() // take one snapshot event, then stall
	for i := range 20 {
		if _, err := s.Update(ctx, "policies/p0", store.Precondition{}, func(p *corsdv1.Policy) error {
			p.Description = fmt.Sprint(i)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-w.Events():
			if !ok {
				if !errors.Is(w.Err(), store.ErrWatchTooSlow) {
					t.Fatalf("Err() = %v, want ErrWatchTooSlow", w.Err())
				}
				return
			}
		case <-deadline:
			t.Fatal("stalled watcher never cut off")
		}
	}
}

// TestGroupCommitFailures runs failing, panicking and good writes together:
// each fails alone, and nothing of the failed ones is written.
func TestGroupCommitFailures(t *testing.T) {
	ctx := t.Context()
	s := openTemp(t)
	if _, err := s.Create(ctx, testPolicy("policies/target")); err != nil {
		t.Fatal(err)
	}
	errBoom := errors.New("boom")
	const n = 48
	var wg sync.WaitGroup
	results := make([]string, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			switch i % 4 {
			case 0: // apply writes, then fails: the transaction must roll back
				err := s.update(ctx, "test", write{
					check: func(*bolt.Tx) error { return nil },
					apply: func(tx *bolt.Tx) error {
						if err := tx.Bucket(bucketPolicies).Put(fmt.Appendf(nil, "junk-%d", i), []byte("x")); err != nil {
							return err
						}
						return errBoom
					},
				})
				if errors.Is(err, errBoom) {
					results[i] = "failed"
				}
			case 1: // mutate panics: the panic surfaces in this goroutine
				defer func() {
					if r := recover(); r == "mutate panic" {
						results[i] = "panicked"
					}
				}()
				_, _ = s.Update(ctx, "policies/target", store.Precondition{}, func(*corsdv1.Policy) error { panic("mutate panic") })
			case 2: // a precondition fails in check
				_, err := s.Update(ctx, "policies/target", store.Precondition{Etag: "stale"}, func(*corsdv1.Policy) error { return nil })
				if errors.Is(err, store.ErrConflict) {
					results[i] = "conflict"
				}
			default:
				if _, err := s.Create(ctx, testPolicy(fmt.Sprintf("policies/p%02d", i))); err == nil {
					results[i] = "created"
				}
			}
		})
	}
	close(start)
	wg.Wait()
	want := map[int]string{0: "failed", 1: "panicked", 2: "conflict", 3: "created"}
	for i, r := range results {
		if r != want[i%4] {
			t.Errorf("write %d: %q, want %q", i, r, want[i%4])
		}
	}
	// Only the creates were written, each once, with dense revisions.
	if rev, _ := s.Revision(ctx); rev != 1+n/4 {
		t.Errorf("Revision() = %d, want %d", rev, 1+n/4)
	}
	for _, p := range listAllPolicies(t, s) {
		if !strings.HasPrefix(p.GetName(), "policies/") {
			t.Errorf("a failed write left %q", p.GetName())
		}
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPolicies).ForEach(func(k, _ []byte) error {
			if bytes.HasPrefix(k, []byte("junk")) {
				return fmt.Errorf("rolled-back key %q is stored", k)
			}
			return nil
		})
	}); err != nil {
		t.Error(err)
	}
	changes, err := s.Changes(ctx, store.ChangesQuery{Since: 1})
	if err != nil || len(changes) != n/4 {
		t.Errorf("Changes() = %d changes, %v; want %d creates", len(changes), err, n/4)
	}
}
