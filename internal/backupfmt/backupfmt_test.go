package backupfmt

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

var when = time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)

// sample writes a backup of revision 5 (compacted 2): policies a and b,
// changes 3..5.
func sample(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, 5, 2, "test", when)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*corsdv1.Policy{{Name: "policies/a", Revision: 3}, {Name: "policies/b", Revision: 5, Hosts: []string{"b.example.com"}}} {
		if err := w.Policy(p); err != nil {
			t.Fatal(err)
		}
	}
	for rev := int64(3); rev <= 5; rev++ {
		if err := w.Change(&corsdv1.Change{Revision: rev, Name: "policies/a", Kind: corsdv1.ChangeKind_CHANGE_KIND_UPDATE}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("Close() = %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	data := sample(t)
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("NewReader() = %v", err)
	}
	want := &corsdv1.BackupHeader{FormatVersion: FormatVersion, Revision: 5, CompactedRevision: 2, Source: "test"}
	if diff := cmp.Diff(want, r.Header(), protocmp.Transform(), protocmp.IgnoreFields(&corsdv1.BackupHeader{}, "create_time")); diff != "" {
		t.Errorf("header mismatch (-want +got):\n%s", diff)
	}
	var names []string
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Next() = %v", err)
		}
		if p := rec.GetPolicy(); p != nil {
			names = append(names, p.GetName())
		} else {
			names = append(names, "change")
		}
	}
	if diff := cmp.Diff([]string{"policies/a", "policies/b", "change", "change", "change"}, names); diff != "" {
		t.Errorf("records mismatch (-want +got):\n%s", diff)
	}
}

// build writes the magic, a header and records, framed but unchecked.
func build(t *testing.T, h *corsdv1.BackupHeader, recs ...*corsdv1.BackupRecord) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := &Writer{w: newBufWriter(&buf)}
	buf.WriteString(Magic)
	if err := w.write(h); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func pol(name string, rev int64) *corsdv1.BackupRecord {
	return &corsdv1.BackupRecord{Record: &corsdv1.BackupRecord_Policy{Policy: &corsdv1.Policy{Name: name, Revision: rev}}}
}

func chg(rev int64) *corsdv1.BackupRecord {
	return &corsdv1.BackupRecord{Record: &corsdv1.BackupRecord_Change{Change: &corsdv1.Change{Revision: rev, Name: "policies/a"}}}
}

func trailer(p, c int64) *corsdv1.BackupRecord {
	return &corsdv1.BackupRecord{Record: &corsdv1.BackupRecord_Trailer{Trailer: &corsdv1.BackupTrailer{PolicyCount: p, ChangeCount: c}}}
}

func TestInvalid(t *testing.T) {
	hdr := &corsdv1.BackupHeader{FormatVersion: 1, Revision: 5, CompactedRevision: 2}
	good := sample(t)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{name: "empty", data: nil, want: "magic"},
		{name: "bbolt file", data: append([]byte{0, 0, 0, 0, 0xed, 0xda, 0x0c, 0xed}, make([]byte, 100)...), want: "magic"},
		{name: "magic only", data: []byte(Magic), want: "header"},
		{name: "no version", data: build(t, &corsdv1.BackupHeader{Revision: 1}), want: "without a format version"},
		{name: "newer version", data: build(t, &corsdv1.BackupHeader{FormatVersion: 2}), want: "upgrade corsd"},
		{name: "compacted past revision", data: build(t, &corsdv1.BackupHeader{FormatVersion: 1, Revision: 1, CompactedRevision: 2}), want: "out of range"},
		{name: "truncated", data: good[:len(good)-1], want: "truncated"},
		{name: "no trailer", data: build(t, hdr, pol("policies/a", 3)), want: "truncated"},
		{name: "policies out of order", data: build(t, hdr, pol("policies/b", 3), pol("policies/a", 3), trailer(2, 0)), want: "not in name order"},
		{name: "policy twice", data: build(t, hdr, pol("policies/a", 3), pol("policies/a", 4), trailer(2, 0)), want: "not in name order"},
		{name: "policy past the revision", data: build(t, hdr, pol("policies/a", 6), trailer(1, 0)), want: "outside 1..5"},
		{name: "policy without name", data: build(t, hdr, pol("", 3), trailer(1, 0)), want: "no name"},
		{name: "policy after changes", data: build(t, hdr, chg(3), pol("policies/a", 3), trailer(1, 1)), want: "after the changes"},
		{name: "change compacted", data: build(t, hdr, chg(2), trailer(0, 1)), want: "out of order"},
		{name: "changes out of order", data: build(t, hdr, chg(4), chg(3), trailer(0, 2)), want: "out of order"},
		{name: "change past the revision", data: build(t, hdr, chg(6), trailer(0, 1)), want: "out of order"},
		{name: "counts disagree", data: build(t, hdr, pol("policies/a", 3), trailer(2, 0)), want: "the trailer counts"},
		{name: "data after the trailer", data: append(bytes.Clone(good), 1), want: "after the trailer"},
		{name: "empty record", data: build(t, hdr, &corsdv1.BackupRecord{}), want: "empty record"},
		{name: "huge length", data: append([]byte(Magic), 0xff, 0xff, 0xff, 0xff, 0x0f), want: "header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(bytes.NewReader(tt.data))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Verify() = %v, want ErrInvalid saying %q", err, tt.want)
			}
		})
	}
}

// FuzzVerify reads arbitrary bytes as a backup: no panic, bounded memory
// (MaxRecordSize), and whatever Verify accepts, written again through a
// Writer, is accepted with the same header and counts.
func FuzzVerify(f *testing.F) {
	good := sample(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		h := r.Header()
		var buf bytes.Buffer
		w, err := NewWriter(&buf, h.GetRevision(), h.GetCompactedRevision(), h.GetSource(), h.GetCreateTime().AsTime())
		if err != nil {
			t.Fatal(err)
		}
		for {
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return
			}
			switch x := rec.GetRecord().(type) {
			case *corsdv1.BackupRecord_Policy:
				err = w.Policy(x.Policy)
			case *corsdv1.BackupRecord_Change:
				err = w.Change(x.Change)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Close(); err != nil {
			t.Fatal(err)
		}
		first, err := Verify(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("Verify() of an input Next accepted = %v", err)
		}
		again, err := Verify(&buf)
		if err != nil {
			t.Fatalf("Verify() of the rewritten backup = %v", err)
		}
		if diff := cmp.Diff(first, again, protocmp.Transform(), protocmp.IgnoreFields(&corsdv1.BackupHeader{}, "create_time")); diff != "" {
			t.Errorf("rewritten backup differs (-read +rewritten):\n%s", diff)
		}
	})
}
