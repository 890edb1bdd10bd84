package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's on-disk format (version 2): each of the first two pages holds a
// 16-byte page header and a meta record, in the machine's byte order.
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	pageHeaderSize  = 16
	metaSize        = 64 // magic .. checksum
	metaSumOffset   = 56 // the checksum covers the bytes before it
	minBoltPageSize = 1024
	maxBoltPageSize = 1024 << 14 // the largest bbolt looks for
)

// boltMeta is what checkDBFile reads of a meta page.
type boltMeta struct {
	pageSize uint32
	pgid     uint64 // high-water mark: pages [0, pgid) are in use
	txid     uint64
}

// restoreAdvice ends every refusal of a damaged file.
const restoreAdvice = "restore it from a backup (corsd --restore-from BACKUP), or move it away to start with an empty store"

// checkDBFile checks an existing database file before bbolt maps it. bbolt
// trusts the file's size: a file cut short (a failed copy, a full disk)
// makes it touch pages past the end of the mapping, which kills the
// process with SIGBUS. It also initializes an empty file as a new
// database, so a 0-byte file would be served as an empty store. A missing
// file is fine (Open creates it).
func checkDBFile(path string) error {
	f, err := os.Open(path) //nolint:gosec // G304: the operator names the database
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("boltstore: open %s: is a directory", path)
	}
	return checkHeader(f, fi.Size(), path)
}

// checkHeader checks the meta pages of a database of size bytes read
// through r, as bbolt will choose them: the valid one with the higher
// transaction id.
func checkHeader(r io.ReaderAt, size int64, path string) error {
	if size == 0 {
		return fmt.Errorf("%w: %s: the file is empty (0 bytes) and holds no database; corsd never turns an existing file into an empty store: %s", ErrCorrupt, path, restoreAdvice)
	}
	if size < 2*minBoltPageSize {
		return fmt.Errorf("%w: %s: the file is %d bytes long, too short for a database: %s", ErrCorrupt, path, size, restoreAdvice)
	}
	m0, err0 := readMeta(r, 0)
	var (
		pageSize int64
		metas    []boltMeta
	)
	if err0 == nil {
		pageSize = int64(m0.pageSize)
		metas = append(metas, m0)
		if m1, err := readMeta(r, pageSize); err == nil && m1.pageSize == m0.pageSize {
			metas = append(metas, m1)
		}
	} else {
		// The first page is damaged: look for the second where bbolt
		// does, at every page size it supports.
		for ps := int64(minBoltPageSize); ps <= maxBoltPageSize && ps < size; ps *= 2 {
			if m1, err := readMeta(r, ps); err == nil && int64(m1.pageSize) == ps {
				pageSize, metas = ps, append(metas, m1)
				break
			}
		}
	}
	if len(metas) == 0 {
		return fmt.Errorf("%w: %s: no valid bbolt meta page (%w); the file is damaged or is not a corsd database: %s", ErrCorrupt, path, err0, restoreAdvice)
	}
	m := metas[0]
	if len(metas) == 2 && metas[1].txid > m.txid {
		m = metas[1]
	}
	if m.pgid < 2 {
		return fmt.Errorf("%w: %s: the meta page says the file has %d pages: %s", ErrCorrupt, path, m.pgid, restoreAdvice)
	}
	if m.pgid > uint64(size)/uint64(pageSize) {
		return fmt.Errorf("%w: %s: the file is %d bytes long but its last transaction needs %d pages of %d bytes: it was truncated: %s",
			ErrCorrupt, path, size, m.pgid, pageSize, restoreAdvice)
	}
	return nil
}

// readMeta reads and validates the meta page at offset off.
func readMeta(r io.ReaderAt, off int64) (boltMeta, error) {
	var buf [pageHeaderSize + metaSize]byte
	if _, err := r.ReadAt(buf[:], off); err != nil {
		return boltMeta{}, fmt.Errorf("read meta page at %d: %w", off, err)
	}
	b := buf[pageHeaderSize:]
	le := binary.NativeEndian
	switch {
	case le.Uint32(b[0:]) != boltMagic:
		return boltMeta{}, errors.New("not a bbolt file: bad magic number")
	case le.Uint32(b[4:]) != boltVersion:
		return boltMeta{}, fmt.Errorf("bbolt format version %d, want %d", le.Uint32(b[4:]), boltVersion)
	}
	h := fnv.New64a()
	_, _ = h.Write(b[:metaSumOffset])
	if h.Sum64() != le.Uint64(b[metaSumOffset:]) {
		return boltMeta{}, errors.New("meta page checksum mismatch")
	}
	m := boltMeta{pageSize: le.Uint32(b[8:]), pgid: le.Uint64(b[40:]), txid: le.Uint64(b[48:])}
	if m.pageSize < minBoltPageSize || m.pageSize > maxBoltPageSize {
		return boltMeta{}, fmt.Errorf("implausible page size %d", m.pageSize)
	}
	return m, nil
}
