package boltstore

import (
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
	f.Add([]byte{})
	f.Add([]byte{0x2a, 0x05, 'a'})
	f.Fuzz(func(t *testing.T, data []byte) {
		name := peekChangeName(data)
		ts, ok := peekChangeTime(data)
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
