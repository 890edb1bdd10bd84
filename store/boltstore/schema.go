package boltstore

import (
	"encoding/binary"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"
)

// Bucket names and meta keys.
var (
	bucketMeta     = []byte("meta")
	bucketPolicies = []byte("policies")
	bucketChanges  = []byte("changes")

	keySchema    = []byte("schema")
	keyRevision  = []byte("revision")
	keyCompacted = []byte("compacted")
)

// migration upgrades a file from one schema version to the next, inside the
// transaction that opens it.
type migration struct {
	// from is the version the migration upgrades; it produces from+1.
	from    uint64
	upgrade func(tx *bolt.Tx) error
}

// migrations lists every upgrade in order; version N+1 appends
// {from: N, upgrade: ...}. Version 2 added a checksum to every record.
var migrations = []migration{{from: 1, upgrade: addChecksums}}

// currentSchema is the version this binary writes: one past the last
// migration.
func currentSchema(ms []migration) uint64 { return uint64(len(ms)) + 1 }

// prepare checks (or creates) the layout of the file and migrates it to the
// current schema. It returns the current revision.
func prepare(tx *bolt.Tx, path string, ms []migration) (int64, error) {
	want := currentSchema(ms)
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		// A file with no bucket at all is new (or was created by a process
		// that died before its first transaction): initialize it. Anything
		// else belongs to another program.
		var foreign []string
		if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			foreign = append(foreign, string(name))
			return nil
		}); err != nil {
			return 0, fmt.Errorf("boltstore: open %s: %w", path, err)
		}
		if len(foreign) > 0 {
			return 0, fmt.Errorf("%w: %s: it is a bbolt file without a %q bucket (it has %q); was it written by another program?", ErrCorrupt, path, bucketMeta, foreign)
		}
		for _, name := range [][]byte{bucketMeta, bucketPolicies, bucketChanges} {
			if _, err := tx.CreateBucket(name); err != nil {
				return 0, fmt.Errorf("boltstore: open %s: create bucket %q: %w", path, name, err)
			}
		}
		meta = tx.Bucket(bucketMeta)
		for _, kv := range []struct {
			k []byte
			v uint64
		}{{keySchema, want}, {keyRevision, 0}, {keyCompacted, 0}} {
			if err := meta.Put(kv.k, u64(kv.v)); err != nil {
				return 0, fmt.Errorf("boltstore: open %s: %w", path, err)
			}
		}
		return 0, nil
	}

	got, ok := getU64(meta, keySchema)
	if !ok {
		return 0, fmt.Errorf("%w: %s: the meta bucket has no valid schema version", ErrCorrupt, path)
	}
	if got > want {
		return 0, fmt.Errorf("boltstore: open %s: %w", path, &SchemaVersionError{Found: got, Supported: want})
	}
	if got == 0 {
		return 0, fmt.Errorf("%w: %s: schema version 0", ErrCorrupt, path)
	}
	for _, m := range ms {
		if m.from < got {
			continue
		}
		if m.from != got {
			return 0, fmt.Errorf("boltstore: open %s: no migration from schema version %d", path, got)
		}
		if err := m.upgrade(tx); err != nil {
			return 0, fmt.Errorf("boltstore: open %s: migrate schema %d to %d: %w", path, got, got+1, err)
		}
		got++
		if err := meta.Put(keySchema, u64(got)); err != nil {
			return 0, fmt.Errorf("boltstore: open %s: %w", path, err)
		}
	}
	if err := checkLayout(tx); err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
	return metaInt(tx, keyRevision), nil
}

// checkLayout verifies that a current-schema file has every bucket and key;
// a failure means ErrCorrupt.
func checkLayout(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	for _, name := range [][]byte{bucketPolicies, bucketChanges} {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("bucket %q is missing", name)
		}
	}
	for _, k := range [][]byte{keySchema, keyRevision, keyCompacted} {
		if _, ok := getU64(meta, k); !ok {
			return fmt.Errorf("meta key %q is missing or malformed", k)
		}
	}
	return nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

// i64 encodes a revision, which is never negative.
func i64(v int64) []byte {
	if v < 0 {
		v = 0
	}
	return u64(uint64(v))
}

// toInt64 decodes a revision; values past MaxInt64 only occur in a damaged
// file and saturate.
func toInt64(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

// revKey is the changes-bucket key of a revision.
func revKey(rev int64) []byte { return i64(rev) }

func getU64(b *bolt.Bucket, k []byte) (uint64, bool) {
	v := b.Get(k)
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

// metaInt reads a meta counter that checkLayout proved present.
func metaInt(tx *bolt.Tx, k []byte) int64 {
	v, _ := getU64(tx.Bucket(bucketMeta), k)
	return toInt64(v)
}
