package boltstore

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// FuzzPageToken: page tokens come back from clients. Decoding never
// panics, refuses with ErrInvalidArgument, and round-trips what it accepts.
func FuzzPageToken(f *testing.F) {
	for _, seed := range []string{"", "x", encodePageToken("policies/a"), "cDE6", "cDE6cG9saWNpZXMvYQ", "not base64!"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		name, err := decodePageToken(tok)
		if err != nil {
			if !errors.Is(err, store.ErrInvalidArgument) {
				t.Fatalf("decodePageToken(%q) = %v, want ErrInvalidArgument", tok, err)
			}
			return
		}
		if name == "" {
			t.Fatalf("decodePageToken(%q) accepted an empty name", tok)
		}
		again, err := decodePageToken(encodePageToken(name))
		if err != nil || again != name {
			t.Fatalf("round trip of %q = %q, %v", name, again, err)
		}
	})
}

// FuzzPeekChange: the change log is read field by field without a full
// decode. On any input the peek agrees with proto.Unmarshal when that
// succeeds, and never panics.
func FuzzPeekChange(f *testing.F) {
	c := &corsdv1.Change{Revision: 3, ChangeTime: timestamppb.New(time.Unix(1700000000, 5)), Name: "policies/a", Actor: "x", After: &corsdv1.Policy{Name: "policies/a"}}
	data, _ := proto.Marshal(c)
	f.Add(data)
	// Concatenated messages merge: the second change_time merges into the
	// first, the second name replaces the first.
	other, _ := proto.Marshal(&corsdv1.Change{ChangeTime: &timestamppb.Timestamp{Nanos: 9}, Name: "policies/b"})
	f.Add(append(append([]byte{}, data...), other...))
	f.Add([]byte{})
	f.Add([]byte{0x2a, 0x05, 'a'})
	f.Fuzz(func(t *testing.T, data []byte) {
		rec := sealRecord(append(make([]byte, recordHeaderLen), data...))
		name := peekChangeName(rec)
		ts, ok := peekChangeTime(rec)
		var c corsdv1.Change
		if err := proto.Unmarshal(data, &c); err != nil {
			return
		}
		if name != c.GetName() {
			t.Fatalf("peekChangeName = %q, Unmarshal says %q", name, c.GetName())
		}
		if ok != (c.GetChangeTime() != nil) || (ok && !ts.Equal(c.GetChangeTime().AsTime())) {
			t.Fatalf("peekChangeTime = %v, %v; Unmarshal says %v", ts, ok, c.GetChangeTime())
		}
	})
}

func TestEncodeChangeMatchesMarshal(t *testing.T) {
	full := &corsdv1.Policy{
		Name:        "policies/a",
		Description: "d",
		Origins:     []*corsdv1.OriginRule{{Pattern: "https://a.example", AllowCredentials: true}, {Pattern: "*"}},
		Revision:    7,
		Etag:        "7",
		CreateTime:  timestamppb.New(time.Unix(100, 5)),
	}
	encode := func(p *corsdv1.Policy) []byte {
		if p == nil {
			return nil
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if b == nil {
			b = []byte{} // present but empty
		}
		return b
	}
	tests := []struct {
		name          string
		rev           int64
		at            time.Time
		actor         string
		kind          corsdv1.ChangeKind
		before, after *corsdv1.Policy
	}{
		{name: "create", rev: 1, at: time.Unix(1700000000, 123), actor: "alice", kind: corsdv1.ChangeKind_CHANGE_KIND_CREATE, after: full},
		{name: "update", rev: 1 << 40, at: time.Unix(1700000000, 0), actor: "bob", kind: corsdv1.ChangeKind_CHANGE_KIND_UPDATE, before: full, after: full},
		{name: "delete of an empty policy", rev: 3, at: time.Unix(0, 0), kind: corsdv1.ChangeKind_CHANGE_KIND_DELETE, before: &corsdv1.Policy{}},
		{name: "zero values", at: time.Unix(-5, 7), after: &corsdv1.Policy{}},
		{name: "negative revision", rev: -2, at: time.Unix(1, 1), kind: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := encodeChange(change{rev: tt.rev, at: tt.at, actor: tt.actor, kind: tt.kind, name: "policies/a", before: encode(tt.before), after: encode(tt.after)})
			if err != nil {
				t.Fatal(err)
			}
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&corsdv1.Change{
				Revision: tt.rev, ChangeTime: timestamppb.New(tt.at), Actor: tt.actor, Kind: tt.kind,
				Name: "policies/a", Before: tt.before, After: tt.after,
			})
			if err != nil {
				t.Fatal(err)
			}
			payload, ok := openRecord(got)
			if !ok {
				t.Fatalf("encodeChange() = %x: the checksum does not match", got)
			}
			if !bytes.Equal(payload, want) {
				t.Errorf("encodeChange() payload = %x\nwant                       %x", payload, want)
			}
		})
	}
}
