// Package backupfmt writes and reads corsd's backend-neutral backup format
// (see proto/corsd/v1/backup.proto for the layout): the magic bytes, a
// BackupHeader, the policies in name order, the retained changes in revision
// order and a BackupTrailer, each message length-delimited.
//
// Every store backend produces backups with Writer and loads them with
// Reader, so a backup taken from one backend restores into any other;
// corsctl uses Verify to check a backup before it keeps the file. Reader
// checks the whole structure (order, bounds, counts, truncation) as it goes,
// so a backend that loads records while reading must still discard them
// when Next fails.
package backupfmt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// Magic starts every backup.
const Magic = "CORSDBK\n"

// FormatVersion is the version this package writes and the newest it
// reads.
const FormatVersion = 1

// MaxRecordSize bounds one message of a backup: far above the largest
// policy the server accepts, so that a damaged length cannot make a reader
// allocate without bound.
const MaxRecordSize = 64 << 20

// ErrInvalid: the input is not a complete, well-formed corsd backup.
var ErrInvalid = errors.New("backupfmt: not a valid corsd backup")

// Deterministic, so that two backups of one state are equal bytes.
var marshalOpts = proto.MarshalOptions{Deterministic: true}

// Writer writes one backup. Call Policy for every policy in name order,
// then Change for every change in revision order, then Close.
type Writer struct {
	w        *bufio.Writer
	n        int64
	policies int64
	changes  int64
	err      error
}

// NewWriter writes the magic and the header (its format_version is set
// here) to w.
func NewWriter(w io.Writer, revision, compacted int64, source string, now time.Time) (*Writer, error) {
	bw := &Writer{w: newBufWriter(w)}
	if _, err := bw.w.WriteString(Magic); err != nil {
		return nil, fmt.Errorf("backupfmt: write: %w", err)
	}
	bw.n = int64(len(Magic))
	h := &corsdv1.BackupHeader{FormatVersion: FormatVersion, Revision: revision, CompactedRevision: compacted, CreateTime: timestamppb.New(now), Source: source}
	if err := bw.write(h); err != nil {
		return nil, err
	}
	return bw, nil
}

func (w *Writer) write(m proto.Message) error {
	if w.err != nil {
		return w.err
	}
	data, err := marshalOpts.Marshal(m)
	if err != nil {
		w.err = fmt.Errorf("backupfmt: encode %T: %w", m, err)
		return w.err
	}
	if len(data) > MaxRecordSize {
		w.err = fmt.Errorf("backupfmt: a %T of %d bytes is larger than %d", m, len(data), MaxRecordSize)
		return w.err
	}
	// The framing of protodelim, without encoding the message twice.
	frame := protowire.AppendVarint(make([]byte, 0, 10+len(data)), uint64(len(data)))
	n, err := w.w.Write(append(frame, data...))
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("backupfmt: write: %w", err)
	}
	return w.err
}

// Policy writes a policy record.
func (w *Writer) Policy(p *corsdv1.Policy) error {
	w.policies++
	return w.write(&corsdv1.BackupRecord{Record: &corsdv1.BackupRecord_Policy{Policy: p}})
}

// Change writes a change record.
func (w *Writer) Change(c *corsdv1.Change) error {
	w.changes++
	return w.write(&corsdv1.BackupRecord{Record: &corsdv1.BackupRecord_Change{Change: c}})
}

func newBufWriter(w io.Writer) *bufio.Writer { return bufio.NewWriterSize(w, 64<<10) }

// Close writes the trailer, flushes and returns the bytes written in all.
// It does not close the underlying writer.
func (w *Writer) Close() (int64, error) {
	if err := w.write(&corsdv1.BackupRecord{Record: &corsdv1.BackupRecord_Trailer{Trailer: &corsdv1.BackupTrailer{PolicyCount: w.policies, ChangeCount: w.changes}}}); err != nil {
		return w.n, err
	}
	if err := w.w.Flush(); err != nil {
		return w.n, fmt.Errorf("backupfmt: write: %w", err)
	}
	return w.n, nil
}

// Reader reads one backup and checks it as it goes.
type Reader struct {
	r        *bufio.Reader
	header   *corsdv1.BackupHeader
	lastName string
	lastRev  int64
	policies int64
	changes  int64
	done     bool
}

// NewReader reads and checks the magic and the header.
func NewReader(r io.Reader) (*Reader, error) {
	br := &Reader{r: bufio.NewReaderSize(r, 64<<10)}
	magic := make([]byte, len(Magic))
	if _, err := io.ReadFull(br.r, magic); err != nil || string(magic) != Magic {
		return nil, fmt.Errorf("%w: it does not start with the corsd backup magic; is it a backup written by corsctl backup?", ErrInvalid)
	}
	h := new(corsdv1.BackupHeader)
	if err := br.read(h); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrInvalid, err)
	}
	switch {
	case h.GetFormatVersion() == 0:
		return nil, fmt.Errorf("%w: header without a format version", ErrInvalid)
	case h.GetFormatVersion() > FormatVersion:
		return nil, fmt.Errorf("%w: format version %d is newer than this corsd reads (%d); upgrade corsd", ErrInvalid, h.GetFormatVersion(), FormatVersion)
	case h.GetRevision() < 0 || h.GetCompactedRevision() < 0 || h.GetCompactedRevision() > h.GetRevision():
		return nil, fmt.Errorf("%w: header revisions %d (compacted %d) are out of range", ErrInvalid, h.GetRevision(), h.GetCompactedRevision())
	}
	br.header = h
	br.lastRev = h.GetCompactedRevision()
	return br, nil
}

func (r *Reader) read(m proto.Message) error {
	err := protodelim.UnmarshalOptions{MaxSize: MaxRecordSize}.UnmarshalFrom(r.r, m)
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Header returns the header.
func (r *Reader) Header() *corsdv1.BackupHeader { return r.header }

// Next returns the next policy or change record. After the last one it
// checks the trailer and the end of the input and returns io.EOF; any
// problem is an error wrapping ErrInvalid.
func (r *Reader) Next() (*corsdv1.BackupRecord, error) {
	if r.done {
		return nil, io.EOF
	}
	rec := new(corsdv1.BackupRecord)
	if err := r.read(rec); err != nil {
		return nil, fmt.Errorf("%w: record %d: %w (truncated?)", ErrInvalid, r.policies+r.changes+1, err)
	}
	switch x := rec.GetRecord().(type) {
	case *corsdv1.BackupRecord_Policy:
		p := x.Policy
		switch {
		case r.changes > 0:
			return nil, fmt.Errorf("%w: policy %q after the changes", ErrInvalid, p.GetName())
		case p.GetName() == "":
			return nil, fmt.Errorf("%w: policy record %d has no name", ErrInvalid, r.policies+1)
		case r.policies > 0 && p.GetName() <= r.lastName:
			return nil, fmt.Errorf("%w: policy %q follows %q: not in name order, or twice", ErrInvalid, p.GetName(), r.lastName)
		case p.GetRevision() < 1 || p.GetRevision() > r.header.GetRevision():
			return nil, fmt.Errorf("%w: policy %q has revision %d, outside 1..%d", ErrInvalid, p.GetName(), p.GetRevision(), r.header.GetRevision())
		}
		r.lastName = p.GetName()
		r.policies++
	case *corsdv1.BackupRecord_Change:
		c := x.Change
		switch {
		case c.GetRevision() <= r.lastRev || c.GetRevision() > r.header.GetRevision():
			return nil, fmt.Errorf("%w: change %d out of order or outside %d..%d", ErrInvalid, c.GetRevision(), r.lastRev+1, r.header.GetRevision())
		case c.GetName() == "":
			return nil, fmt.Errorf("%w: change %d has no name", ErrInvalid, c.GetRevision())
		}
		r.lastRev = c.GetRevision()
		r.changes++
	case *corsdv1.BackupRecord_Trailer:
		t := x.Trailer
		if t.GetPolicyCount() != r.policies || t.GetChangeCount() != r.changes {
			return nil, fmt.Errorf("%w: the trailer counts %d policies and %d changes, the backup holds %d and %d", ErrInvalid, t.GetPolicyCount(), t.GetChangeCount(), r.policies, r.changes)
		}
		if _, err := r.r.ReadByte(); !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: data after the trailer", ErrInvalid)
		}
		r.done = true
		return nil, io.EOF
	default:
		return nil, fmt.Errorf("%w: empty record %d", ErrInvalid, r.policies+r.changes+1)
	}
	return rec, nil
}

// Summary describes a verified backup.
type Summary struct {
	Header   *corsdv1.BackupHeader
	Policies int64
	Changes  int64
}

// Verify reads a whole backup and checks it, holding one record at a time.
func Verify(r io.Reader) (Summary, error) {
	br, err := NewReader(r)
	if err != nil {
		return Summary{}, err
	}
	for {
		if _, err := br.Next(); errors.Is(err, io.EOF) {
			return Summary{Header: br.header, Policies: br.policies, Changes: br.changes}, nil
		} else if err != nil {
			return Summary{}, err
		}
	}
}
