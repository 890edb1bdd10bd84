package etcdstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/corsd/corsd/internal/etcdtest"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
	"github.com/corsd/corsd/store/boltstore"
	"github.com/corsd/corsd/store/storetest"
)

type etcdServer = etcdtest.Server

func startEtcd(t testing.TB) *etcdServer { return etcdtest.Start(t) }

var prefixes atomic.Int64

// newPrefix returns a key prefix no other test uses.
func newPrefix() string { return fmt.Sprintf("/corsd-test/%d/", prefixes.Add(1)) }

func openStore(t testing.TB, srv *etcdServer, prefix string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(context.Background(), []string{srv.Endpoint}, prefix, opts...)
	if err != nil {
		t.Fatalf("Open(%s, %q) = %v", srv.Endpoint, prefix, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func suiteOptions(o storetest.Options) []Option {
	opts := []Option{WithWatchBuffer(o.WatchBuffer)}
	if o.MaxChanges > 0 {
		opts = append(opts, WithRetention(o.MaxChanges))
	}
	return opts
}

func TestConformance(t *testing.T) {
	srv := startEtcd(t)
	storetest.Run(t, storetest.Config{
		New: func(t *testing.T, o storetest.Options) store.Store {
			return openStore(t, srv, newPrefix(), suiteOptions(o)...)
		},
		Replica: func(t *testing.T, s store.Store, o storetest.Options) store.Store {
			return openStore(t, srv, s.(*Store).prefix, suiteOptions(o)...)
		},
	})
}

// TestUnavailable checks that an etcd that cannot be reached makes every
// call fail with store.ErrUnavailable within the request timeout, and
// Open too.
func TestUnavailable(t *testing.T) {
	srv := startEtcd(t)
	s := openStore(t, srv, newPrefix(), WithRequestTimeout(500*time.Millisecond), WithDialTimeout(500*time.Millisecond))
	ctx := t.Context()
	if _, err := s.Create(ctx, &corsdv1.Policy{Name: "policies/a"}); err != nil {
		t.Fatal(err)
	}
	w, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for ev := range w.Events() { // the initial state, read before etcd goes
		if ev.Type == store.EventSynced {
			break
		}
	}
	srv.Stop()
	calls := []struct {
		name string
		call func() error
	}{
		{"Create", func() error { _, err := s.Create(ctx, &corsdv1.Policy{Name: "policies/b"}); return err }},
		{"Get", func() error { _, err := s.Get(ctx, "policies/a"); return err }},
		{"List", func() error { _, err := s.List(ctx, 0, ""); return err }},
		{"Update", func() error {
			_, err := s.Update(ctx, "policies/a", store.Precondition{}, func(*corsdv1.Policy) error { return nil })
			return err
		}},
		{"Delete", func() error { _, err := s.Delete(ctx, "policies/a", store.Precondition{}); return err }},
		{"Changes", func() error { _, err := s.Changes(ctx, store.ChangesQuery{}); return err }},
		{"Revision", func() error { _, err := s.Revision(ctx); return err }},
		{"Watch", func() error {
			w, err := s.Watch(ctx, 0)
			if err != nil {
				return err
			}
			for range w.Events() {
			}
			return w.Err()
		}},
		{"Backup", func() error { _, err := s.Backup(ctx, &bytes.Buffer{}); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			err := c.call()
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s with etcd down = %v, want ErrUnavailable", c.name, err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("%s took %s to fail", c.name, d)
			}
		})
	}
	// A synced watch stays open: a replica keeps its last state.
	if err := w.Err(); err != nil {
		t.Errorf("open watch ended with %v when etcd went down", err)
	}
	start := time.Now()
	_, err = Open(t.Context(), []string{srv.Endpoint}, newPrefix(), WithRequestTimeout(500*time.Millisecond), WithDialTimeout(500*time.Millisecond))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open(etcd down) = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Open(etcd down) took %s to fail", d)
	}
}

// TestEtcdCompaction checks that watchers resume from corsd's change log,
// not etcd's history: after an operator compacts etcd, a watch from an old
// revision still gets every change, and so does a replica opened later.
func TestEtcdCompaction(t *testing.T) {
	srv := startEtcd(t)
	prefix := newPrefix()
	s := openStore(t, srv, prefix)
	ctx := t.Context()
	for i := range 10 {
		if _, err := s.Create(ctx, &corsdv1.Policy{Name: fmt.Sprintf("policies/p%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cli.Close() }()
	resp, err := cli.Get(ctx, "anything")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.GetRevision(), clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("Compact() = %v", err)
	}
	replica := openStore(t, srv, prefix)
	for _, st := range []*Store{s, replica} {
		w, err := st.Watch(ctx, 2)
		if err != nil {
			t.Fatalf("Watch(2) after etcd's compaction = %v", err)
		}
		if _, err := s.Create(ctx, &corsdv1.Policy{Name: fmt.Sprintf("policies/later-%p", st)}); err != nil {
			t.Fatal(err)
		}
		rev, _ := s.Revision(ctx)
		for want := int64(3); want <= rev; want++ {
			select {
			case ev := <-w.Events():
				if ev.Revision != want {
					t.Fatalf("event revision %d, want %d", ev.Revision, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no event %d after etcd's compaction", want)
			}
		}
	}
}

// TestBackupAcrossBackends restores a bbolt backup into etcd and the etcd
// backup of that back into bbolt: the three stores hold the same state.
func TestBackupAcrossBackends(t *testing.T) {
	ctx := t.Context()
	bolt1, err := boltstore.Open(filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bolt1.Close() }()
	for i := range 30 {
		p := &corsdv1.Policy{Name: fmt.Sprintf("policies/p%02d", i), Hosts: []string{fmt.Sprintf("h%d.example.com", i)},
			Origins: []*corsdv1.OriginRule{{Pattern: "https://app.example.com"}}}
		if _, err := bolt1.Create(store.WithActor(ctx, "alice"), p); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if _, err := bolt1.Delete(ctx, fmt.Sprintf("policies/p%02d", i*3), store.Precondition{}); err != nil {
			t.Fatal(err)
		}
	}
	var fromBolt bytes.Buffer
	if _, err := bolt1.Backup(ctx, &fromBolt); err != nil {
		t.Fatal(err)
	}
	srv := startEtcd(t)
	etcd := openStore(t, srv, newPrefix())
	if err := etcd.Restore(ctx, &fromBolt); err != nil {
		t.Fatalf("etcd Restore(bolt backup) = %v", err)
	}
	storetest.Compare(t, bolt1, etcd)

	var fromEtcd bytes.Buffer
	if _, err := etcd.Backup(ctx, &fromEtcd); err != nil {
		t.Fatal(err)
	}
	bolt2, err := boltstore.Open(filepath.Join(t.TempDir(), "b.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bolt2.Close() }()
	if err := bolt2.Restore(ctx, &fromEtcd); err != nil {
		t.Fatalf("bolt Restore(etcd backup) = %v", err)
	}
	storetest.Compare(t, bolt1, bolt2)
	// Host uniqueness carries over.
	_, err = etcd.Create(ctx, &corsdv1.Policy{Name: "policies/thief", Hosts: []string{"h1.example.com"}})
	if !errors.Is(err, store.ErrExists) {
		t.Errorf("Create(restored host) in etcd = %v, want ErrExists", err)
	}
}
