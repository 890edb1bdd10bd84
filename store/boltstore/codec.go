package boltstore

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// Deterministic, so equal messages are equal bytes (backups diff cleanly).
var marshalOpts = proto.MarshalOptions{Deterministic: true}

func marshal(m proto.Message) ([]byte, error) {
	data, err := marshalOpts.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("boltstore: encode %T: %w", m, err)
	}
	return data, nil
}

// Records (schema 2): a CRC-32C of the payload, big-endian, then the
// payload (a deterministic protobuf). bbolt checks its meta pages only; a
// flipped bit in a data page would otherwise decode into a different
// policy, or fail as an unexplained decode error.
const recordHeaderLen = 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sealRecord writes the checksum of rec[recordHeaderLen:] into rec's
// header, which the caller reserved.
func sealRecord(rec []byte) []byte {
	binary.BigEndian.PutUint32(rec, crc32.Checksum(rec[recordHeaderLen:], castagnoli))
	return rec
}

// marshalRecord encodes m as a record, and returns the record and its
// payload (which shares the record's memory).
func marshalRecord(m proto.Message) (rec, payload []byte, err error) {
	rec, err = marshalOpts.MarshalAppend(make([]byte, recordHeaderLen, recordHeaderLen+marshalOpts.Size(m)), m)
	if err != nil {
		return nil, nil, fmt.Errorf("boltstore: encode %T: %w", m, err)
	}
	return sealRecord(rec), rec[recordHeaderLen:], nil
}

// openRecord verifies a record's checksum and returns its payload.
func openRecord(rec []byte) ([]byte, bool) {
	if len(rec) < recordHeaderLen || binary.BigEndian.Uint32(rec) != crc32.Checksum(rec[recordHeaderLen:], castagnoli) {
		return nil, false
	}
	return rec[recordHeaderLen:], true
}

// recordPayload returns a record's payload without verifying it: for
// peeking at a field, where a damaged record is caught by the decode that
// follows.
func recordPayload(rec []byte) []byte {
	if len(rec) < recordHeaderLen {
		return nil
	}
	return rec[recordHeaderLen:]
}

// errDamaged is a record whose checksum does not match: it wraps
// ErrCorrupt and store.ErrDataLoss.
func errDamaged(what string) error {
	return fmt.Errorf("%w: %w", ErrCorrupt, &store.DamagedError{Record: what})
}

// encodeChange encodes a corsd.v1.Change record from the already encoded
// policies, exactly as the deterministic marshaling of the message would,
// without encoding the two policies again.
func encodeChange(c change) ([]byte, error) {
	ts, err := marshal(timestamppb.New(c.at))
	if err != nil {
		return nil, err
	}
	b := make([]byte, recordHeaderLen, recordHeaderLen+48+len(ts)+len(c.actor)+len(c.name)+len(c.before)+len(c.after))
	if c.rev != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64FromInt(c.rev))
	}
	b = protowire.AppendTag(b, changeFieldTime, protowire.BytesType)
	b = protowire.AppendBytes(b, ts)
	if c.actor != "" {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendString(b, c.actor)
	}
	if c.kind != 0 {
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64FromInt(int64(c.kind)))
	}
	if c.name != "" {
		b = protowire.AppendTag(b, changeFieldName, protowire.BytesType)
		b = protowire.AppendString(b, c.name)
	}
	if c.before != nil {
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		b = protowire.AppendBytes(b, c.before)
	}
	if c.after != nil {
		b = protowire.AppendTag(b, 7, protowire.BytesType)
		b = protowire.AppendBytes(b, c.after)
	}
	return sealRecord(b), nil
}

// uint64FromInt is proto's varint encoding of an int64 or enum (two's
// complement).
func uint64FromInt(v int64) uint64 {
	return uint64(v) //nolint:gosec // G115: the wrap-around is the encoding
}

// getPolicy decodes the stored policy name; ErrNotFound when absent.
func getPolicy(b *bolt.Bucket, name string) (*corsdv1.Policy, error) {
	data := b.Get([]byte(name))
	if data == nil {
		return nil, fmt.Errorf("boltstore: policy %q: %w", name, store.ErrNotFound)
	}
	return decodePolicy(name, data)
}

func decodePolicy(name string, rec []byte) (*corsdv1.Policy, error) {
	data, ok := openRecord(rec)
	if !ok {
		return nil, errDamaged(fmt.Sprintf("policy %q", name))
	}
	p := new(corsdv1.Policy)
	if err := proto.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("%w: policy %q does not decode: %w: %w", ErrCorrupt, name, err, store.ErrDataLoss)
	}
	return p, nil
}

func decodeChange(k, rec []byte) (*corsdv1.Change, error) {
	data, ok := openRecord(rec)
	if !ok {
		return nil, errDamaged(fmt.Sprintf("change %d", keyRev(k)))
	}
	c := new(corsdv1.Change)
	if err := proto.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("%w: change %d does not decode: %w: %w", ErrCorrupt, keyRev(k), err, store.ErrDataLoss)
	}
	return c, nil
}

func keyRev(k []byte) int64 {
	if len(k) != 8 {
		return -1
	}
	return toInt64(binary.BigEndian.Uint64(k))
}

// Field numbers of corsd.v1.Change read without decoding the whole message
// (which can hold two large policies).
const (
	changeFieldTime protowire.Number = 2
	changeFieldName protowire.Number = 5
)

// peekField returns the payload of a length-delimited field of an encoded
// message: with last set, its last occurrence (a string's rule); otherwise
// every occurrence concatenated (a message's rule: occurrences merge).
func peekField(data []byte, num protowire.Number, last bool) ([]byte, bool) {
	var (
		out   []byte
		found bool
	)
	for len(data) > 0 {
		n, typ, l := protowire.ConsumeTag(data)
		if l < 0 {
			return nil, false
		}
		data = data[l:]
		if n == num && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(data)
			if m < 0 {
				return nil, false
			}
			if last {
				out = v
			} else {
				out = append(out, v...)
			}
			found = true
			data = data[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(n, typ, data)
		if m < 0 {
			return nil, false
		}
		data = data[m:]
	}
	return out, found
}

// peekChangeTime reads change_time of a Change record.
func peekChangeTime(rec []byte) (time.Time, bool) {
	v, ok := peekField(recordPayload(rec), changeFieldTime, false)
	if !ok {
		return time.Time{}, false
	}
	var ts timestamppb.Timestamp
	if err := proto.Unmarshal(v, &ts); err != nil {
		return time.Time{}, false
	}
	return ts.AsTime(), true
}

// peekChangeName reads name of a Change record.
func peekChangeName(rec []byte) string {
	v, _ := peekField(recordPayload(rec), changeFieldName, true)
	return string(v)
}

// Page tokens carry the last name of the previous page behind a version
// prefix, base64url-encoded so that they are opaque and URL-safe.
const pageTokenPrefix = "p1:"

func encodePageToken(lastName string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + lastName))
}

func decodePageToken(tok string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	name, ok := strings.CutPrefix(string(raw), pageTokenPrefix)
	if err != nil || !ok || name == "" {
		return "", fmt.Errorf("boltstore: list: malformed page token; pass the next_page_token of the previous page unchanged: %w", store.ErrInvalidArgument)
	}
	return name, nil
}

// addChecksums upgrades schema 1 to 2: every policy and change, stored as
// a bare protobuf, becomes a record with a checksum. Records are rewritten
// in batches, re-seeking after each since a cursor is not valid across
// writes.
func addChecksums(tx *bolt.Tx) error {
	const batch = 256
	for _, name := range [][]byte{bucketPolicies, bucketChanges} {
		b := tx.Bucket(name)
		if b == nil {
			return fmt.Errorf("%w: bucket %q is missing", ErrCorrupt, name)
		}
		var next []byte
		for first := true; first || next != nil; first = false {
			type kv struct{ k, v []byte }
			var todo []kv
			c := b.Cursor()
			k, v := c.First()
			if !first {
				k, v = c.Seek(next)
			}
			for ; k != nil && len(todo) < batch; k, v = c.Next() {
				rec := make([]byte, recordHeaderLen, recordHeaderLen+len(v))
				todo = append(todo, kv{bytes.Clone(k), sealRecord(append(rec, v...))})
			}
			next = bytes.Clone(k) // nil at the end
			for _, e := range todo {
				if err := b.Put(e.k, e.v); err != nil {
					return fmt.Errorf("rewrite %q record: %w", name, err)
				}
			}
		}
	}
	return nil
}

// checkLegacyRecord checks a schema-1 record (a bare protobuf), as Verify
// finds them in a backup that Open will migrate.
func checkLegacyRecord(m proto.Message, v []byte) error {
	return proto.Unmarshal(v, m)
}
