package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// bigDB writes a closed database of several MB and returns its bytes and
// page size.
func bigDB(t *testing.T) ([]byte, int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "corsd.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		p := &corsdv1.Policy{Name: fmt.Sprintf("policies/p%02d", i), Description: strings.Repeat("x", 100<<10)}
		if _, err := s.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := readMeta(bytes.NewReader(data), 0)
	if err != nil {
		t.Fatal(err)
	}
	return data, int64(m.pageSize)
}

// TestOpenDamagedFile: a database cut to half its size killed corsd with
// SIGBUS (bbolt maps the file and trusts it). Every damaged file is
// refused with ErrCorrupt, a message that says what to do, and the file
// untouched.
func TestOpenDamagedFile(t *testing.T) {
	good, ps := bigDB(t)
	if len(good) < 4<<20 {
		t.Fatalf("test database is only %d bytes", len(good))
	}
	wreck := func(off int64) []byte {
		d := bytes.Clone(good)
		d[off+pageHeaderSize+20] ^= 0xff // inside the meta, under the checksum
		return d
	}
	var hwm int64
	for _, off := range []int64{0, ps} {
		m, err := readMeta(bytes.NewReader(good), off)
		if err != nil {
			t.Fatal(err)
		}
		hwm = max(hwm, int64(m.pgid)*ps)
	}
	both := wreck(0)
	both[ps+pageHeaderSize+20] ^= 0xff
	tests := []struct {
		name    string
		data    []byte
		wantMsg string // "" when the file must open
	}{
		{name: "half", data: good[:len(good)/2], wantMsg: "truncated"},
		{name: "one page short of the high-water mark", data: good[:hwm-ps], wantMsg: "truncated"},
		{name: "two pages", data: good[:2*ps], wantMsg: "truncated"},
		{name: "one page", data: good[:ps], wantMsg: "truncated"},
		{name: "a few bytes", data: good[:100], wantMsg: "too short"},
		{name: "both meta pages damaged", data: both, wantMsg: "no valid bbolt meta page"},
		{name: "first meta page damaged", data: wreck(0), wantMsg: ""},
		{name: "second meta page damaged", data: wreck(ps), wantMsg: ""},
		{name: "intact", data: good, wantMsg: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "corsd.db")
			mustWrite(t, path, tt.data)
			s, err := Open(path)
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("Open() = %v, want success", err)
				}
				defer func() { _ = s.Close() }()
				// A damaged meta page makes bbolt use the other one, a
				// transaction older: the first policies are there.
				if _, err := s.Get(t.Context(), "policies/p00"); err != nil {
					t.Errorf("Get() = %v", err)
				}
				return
			}
			if err == nil {
				_ = s.Close()
				t.Fatal("Open() succeeded, want ErrCorrupt")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), "restore it from a backup") {
				t.Errorf("Open() = %v, want ErrCorrupt saying %q and how to restore", err, tt.wantMsg)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, tt.data) {
				t.Error("the refused file changed")
			}
			if err := Verify(path); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Verify() = %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestRestoreTruncatedBackup: --restore-from with a truncated backup
// killed corsd and left a temporary copy as large as the backup.
func TestRestoreTruncatedBackup(t *testing.T) {
	good, _ := bigDB(t)
	dir := t.TempDir()
	backup := filepath.Join(dir, "backup.db")
	mustWrite(t, backup, good[:len(good)/2])
	target := filepath.Join(dir, "corsd.db")
	if err := Restore(backup, target); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("Restore(truncated) = %v, want ErrCorrupt saying truncated", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "backup.db" {
			t.Errorf("a failed Restore left %s behind", e.Name())
		}
	}
}

// TestFileShrinksUnderOpenStore: a file cut short while corsd has it
// mapped faults on the next read; the read fails with ErrCorrupt instead
// of killing the process.
func TestFileShrinksUnderOpenStore(t *testing.T) {
	good, _ := bigDB(t)
	path := filepath.Join(t.TempDir(), "corsd.db")
	mustWrite(t, path, good)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if err := os.Truncate(path, int64(len(good)/4)); err != nil {
		t.Fatal(err)
	}
	_, err = s.List(t.Context(), 1000, "")
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("List() on a truncated file = %v, want ErrCorrupt", err)
	}
}

// FuzzCheckHeader: the checks before bbolt maps a file never panic, and
// never accept a file whose meta pages do not validate.
func FuzzCheckHeader(f *testing.F) {
	f.Add(make([]byte, 8192))
	f.Add([]byte("hello, world"))
	f.Fuzz(func(t *testing.T, data []byte) {
		err := checkHeader(bytes.NewReader(data), int64(len(data)), "fuzz.db")
		if err == nil {
			if _, err0 := readMeta(bytes.NewReader(data), 0); err0 != nil && len(data) < 2*minBoltPageSize {
				t.Fatalf("accepted %d bytes without a valid meta page", len(data))
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("checkHeader() = %v, want ErrCorrupt", err)
		}
	})
}

// damage flips a byte in every occurrence of marker in the file at path:
// bit rot in the records that hold it.
func damage(t *testing.T, path, marker string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := bytes.Index(data, []byte(marker)); i >= 0; {
		data[i] ^= 0x20
		n++
		j := bytes.Index(data[i+1:], []byte(marker))
		if j < 0 {
			break
		}
		i += 1 + j
	}
	if n == 0 {
		t.Fatalf("%q is not in %s", marker, path)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedRecord: bit rot in one policy's record decoded into a
// different policy or failed as an unexplained error. It is reported as
// store.ErrDataLoss, the other policies keep serving (and a watch leaves
// the damaged one out), and deleting it without an etag repairs the store.
func TestDamagedRecord(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "corsd.db")
	s := openAt(t, path)
	bad := testPolicy("policies/bad", "https://a.example")
	bad.Description = "MARKER-of-the-bad-policy"
	for _, p := range []*corsdv1.Policy{testPolicy("policies/a"), bad, testPolicy("policies/z")} {
		if _, err := s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	damage(t, path, "MARKER-of-the-bad-policy")

	s = openAt(t, path)
	if _, err := s.Get(ctx, "policies/bad"); !errors.Is(err, store.ErrDataLoss) || !strings.Contains(err.Error(), `policy "policies/bad"`) {
		t.Errorf("Get(damaged) = %v, want ErrDataLoss naming it", err)
	}
	if _, err := s.Get(ctx, "policies/a"); err != nil {
		t.Errorf("Get(intact) = %v", err)
	}
	if _, err := s.Update(ctx, "policies/bad", store.Precondition{}, func(*corsdv1.Policy) error { return nil }); !errors.Is(err, store.ErrDataLoss) {
		t.Errorf("Update(damaged) = %v, want ErrDataLoss", err)
	}
	if _, err := s.Changes(ctx, store.ChangesQuery{}); !errors.Is(err, store.ErrDataLoss) {
		t.Errorf("Changes() over the damaged change = %v, want ErrDataLoss", err)
	}
	if err := Verify(path); err == nil {
		t.Error("Verify() accepted a damaged record")
	}

	w, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for ev := range w.Events() {
		if ev.Type == store.EventSynced {
			break
		}
		names = append(names, ev.Name)
	}
	if fmt.Sprint(names) != "[policies/a policies/z]" {
		t.Errorf("watch snapshot = %v, want the intact policies", names)
	}
	if s.DamagedRecords() != 1 {
		t.Errorf("DamagedRecords() = %d, want 1", s.DamagedRecords())
	}

	// With an etag there is nothing to compare it to.
	if _, err := s.Delete(ctx, "policies/bad", store.Precondition{Etag: "2"}); !errors.Is(err, store.ErrDataLoss) {
		t.Errorf("Delete(damaged, etag) = %v, want ErrDataLoss", err)
	}
	if _, err := s.Delete(ctx, "policies/bad", store.Precondition{}); err != nil {
		t.Fatalf("Delete(damaged) = %v", err)
	}
	if _, err := s.Create(ctx, testPolicy("policies/bad")); err != nil {
		t.Errorf("Create() after deleting the damaged record = %v", err)
	}
}

// TestMigrationAddsChecksums: a schema-1 file (bare protobuf records) is
// verified as it is, and Open adds a checksum to every record.
func TestMigrationAddsChecksums(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "corsd.db")
	p := testPolicy("policies/a", "https://a.example")
	p.Revision, p.Etag = 1, "1"
	pb, _ := proto.Marshal(p)
	cb, _ := proto.Marshal(&corsdv1.Change{Revision: 1, Kind: corsdv1.ChangeKind_CHANGE_KIND_CREATE, Name: "policies/a", After: p})
	writeBolt(t, path, func(tx *bolt.Tx) error {
		if _, err := prepare(tx, path, nil); err != nil { // schema 1
			return err
		}
		if err := tx.Bucket(bucketPolicies).Put([]byte("policies/a"), pb); err != nil {
			return err
		}
		// More changes than one migration batch.
		for r := range int64(600) {
			if err := tx.Bucket(bucketChanges).Put(revKey(r+1), cb); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyRevision, i64(600))
	})
	if err := Verify(path); err != nil {
		t.Fatalf("Verify(schema 1 file) = %v", err)
	}
	s := openAt(t, path)
	got, err := s.Get(ctx, "policies/a")
	if err != nil || !proto.Equal(got, p) {
		t.Fatalf("Get() after migration = %v, %v", got, err)
	}
	chs, err := s.Changes(ctx, store.ChangesQuery{Limit: 1000})
	if err != nil || len(chs) != 600 || chs[599].GetName() != "policies/a" {
		t.Fatalf("Changes() after migration = %d changes, %v", len(chs), err)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if v, _ := getU64(tx.Bucket(bucketMeta), keySchema); v != 2 {
			t.Errorf("schema %d after Open, want 2", v)
		}
		for _, b := range [][]byte{bucketPolicies, bucketChanges} {
			if err := tx.Bucket(b).ForEach(func(k, v []byte) error {
				if _, ok := openRecord(v); !ok {
					t.Errorf("%s %x has no valid checksum", b, k)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// FuzzOpenFile: verifying and opening a database file of any content
// (Restore verifies with the same code) never crashes the process: it
// fails with an error, or opens a store that answers.
func FuzzOpenFile(f *testing.F) {
	dir := f.TempDir()
	seed := filepath.Join(dir, "seed.db")
	s, err := Open(seed)
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{"policies/a", "policies/b"} {
		if _, err := s.Create(context.Background(), testPolicy(name, "https://a.example")); err != nil {
			f.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(good[:8192])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "corsd.db")
		mustWrite(t, path, data)
		verr := Verify(path)
		if checkDBFile(path) != nil {
			return // refused before anything is mapped, as Verify was
		}
		s, err := Open(path, WithLockTimeout(100*time.Millisecond))
		if err != nil {
			return
		}
		defer func() { _ = s.Close() }()
		if verr == nil {
			// What Verify accepts serves every policy.
			if _, err := s.List(t.Context(), 1000, ""); err != nil {
				t.Fatalf("List() on a verified file = %v", err)
			}
		}
		_, _ = s.List(t.Context(), 1000, "")
		_, _ = s.Changes(t.Context(), store.ChangesQuery{})
	})
}
