package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/corsd/corsd/internal/policypb"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// cacheFormat tags the cache file layout; another value is refused.
const cacheFormat = "corsd-client-cache/v1"

// maxCacheSize bounds what loadCache reads: a cache file is untrusted input
// (any local process with write access could have replaced it).
const maxCacheSize = 64 << 20

// cacheFile is the JSON layout of a cache file. Policies are in protojson.
type cacheFile struct {
	Format   string            `json:"format"`
	SavedAt  time.Time         `json:"saved_at"`
	Revision int64             `json:"revision"`
	Names    []string          `json:"names"`
	Policies []json.RawMessage `json:"policies"`
}

// cacheState is a decoded cache file.
type cacheState struct {
	savedAt time.Time
	names   []string
	snap    *snapshot
}

// encodeCache serializes s deterministically (policies in name order).
func encodeCache(names []string, s *snapshot, now time.Time) ([]byte, error) {
	f := cacheFile{Format: cacheFormat, SavedAt: now.UTC(), Revision: s.revision, Names: names}
	if f.Names == nil {
		f.Names = []string{}
	}
	keys := make([]string, 0, len(s.policies))
	for k := range s.policies {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b, err := protojson.Marshal(s.policies[k].pb)
		if err != nil {
			return nil, fmt.Errorf("client: encode cache: %w", err)
		}
		f.Policies = append(f.Policies, b)
	}
	out, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return nil, fmt.Errorf("client: encode cache: %w", err)
	}
	return append(out, '\n'), nil
}

// decodeCache parses and checks a cache file: the format tag, the names,
// every policy (well formed, named, unique, and compiling). Any problem
// rejects the whole file: half a snapshot would decide wrongly.
func decodeCache(data []byte) (*cacheState, error) {
	if len(data) > maxCacheSize {
		return nil, fmt.Errorf("client: cache file larger than %d bytes", maxCacheSize)
	}
	var f cacheFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("client: cache file: %w", err)
	}
	if dec.More() {
		return nil, errors.New("client: cache file: trailing data")
	}
	if f.Format != cacheFormat {
		return nil, fmt.Errorf("client: cache file: format %q, want %q", f.Format, cacheFormat)
	}
	if f.Revision < 0 {
		return nil, fmt.Errorf("client: cache file: negative revision %d", f.Revision)
	}
	if !slices.IsSorted(f.Names) || len(slices.Compact(slices.Clone(f.Names))) != len(f.Names) {
		return nil, errors.New("client: cache file: names not sorted and unique")
	}
	s := &snapshot{revision: f.Revision, policies: make(map[string]*entry, len(f.Policies))}
	for i, raw := range f.Policies {
		pb := new(corsdv1.Policy)
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, pb); err != nil {
			return nil, fmt.Errorf("client: cache file: policies[%d]: %w", i, err)
		}
		name := pb.GetName()
		if name == "" {
			return nil, fmt.Errorf("client: cache file: policies[%d] has no name", i)
		}
		if len(f.Names) > 0 && !slices.Contains(f.Names, name) {
			return nil, fmt.Errorf("client: cache file: policies[%d] %s is not a watched name", i, name)
		}
		if _, dup := s.policies[name]; dup {
			return nil, fmt.Errorf("client: cache file: policy %s appears twice", name)
		}
		p, err := policypb.Compile(pb)
		if err != nil {
			return nil, fmt.Errorf("client: cache file: policy %s: %w", name, err)
		}
		s.policies[name] = &entry{pb: pb, compiled: p}
	}
	names := f.Names
	if len(names) == 0 {
		names = nil
	}
	return &cacheState{savedAt: f.SavedAt, names: names, snap: s}, nil
}

// loadCache installs the cache file's snapshot, or logs why it cannot.
func (w *Watcher) loadCache() {
	log := w.cfg.logger.With("cache_file", w.cfg.cacheFile)
	data, err := readLimited(w.cfg.cacheFile, maxCacheSize)
	if errors.Is(err, os.ErrNotExist) {
		log.Info("client: no cache file yet; waiting for corsd")
		return
	}
	if err != nil {
		log.Warn("client: ignoring unreadable cache file", "err", err)
		return
	}
	st, err := decodeCache(data)
	if err != nil {
		log.Warn("client: ignoring corrupt cache file", "err", err)
		return
	}
	if !slices.Equal(st.names, w.names) {
		// Resuming from its revision would miss the current state of the
		// policies it does not hold.
		log.Warn("client: ignoring cache file written for other policies", "cached", st.names, "watched", w.names)
		return
	}
	w.snap.Store(st.snap)
	w.readyOnce.Do(func() { close(w.ready) })
	if saved := st.savedAt.UnixNano(); saved > 0 && saved < w.lastContact.Load() {
		w.lastContact.Store(saved)
	}
	log.Info("client: loaded policies from cache file", "revision", st.snap.revision, "policies", len(st.snap.policies), "saved_at", st.savedAt)
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // G304: the cache file the caller configured
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("client: cache file larger than %d bytes", limit)
	}
	return data, nil
}

// cacheWriter writes the latest snapshot whenever publish signals a change,
// coalescing bursts, until ctx ends; then it writes once more if needed.
func (w *Watcher) cacheWriter(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	var written *snapshot
	flush := func() {
		s := w.snap.Load()
		if s == nil || s == written {
			return
		}
		if err := w.writeCache(s); err != nil {
			w.cfg.logger.Warn("client: cannot write cache file", "cache_file", w.cfg.cacheFile, "err", err)
			return
		}
		written = s
	}
	for {
		select {
		case <-ctx.Done():
			select {
			case <-w.dirty:
				flush()
			default:
			}
			return
		case <-w.dirty:
			flush()
		}
	}
}

func (w *Watcher) writeCache(s *snapshot) error {
	data, err := encodeCache(w.names, s, time.Now())
	if err != nil {
		return err
	}
	return writeFileAtomic(w.cfg.cacheFile, data)
}

// writeFileAtomic replaces path with data so that readers see the old or
// the new content, never a mix, even after a crash: temporary file in the
// same directory, fsync, rename, fsync of the directory.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil { //nolint:gosec // G304: the directory of the configured cache file
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
