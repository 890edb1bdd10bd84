package storetest

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// testWatchNames checks that a watch limited to names delivers only their
// state and changes, in order, from 0 and from a revision.
func testWatchNames(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, policy("policies/a"))
	b := mustCreate(t, s, policy("policies/b"))
	mustCreate(t, s, policy("policies/c"))
	names := []string{"policies/b", "policies/d", "policies/missing"}
	w, err := s.Watch(ctx, 0, names...)
	if err != nil {
		t.Fatalf("Watch(0, %v) = %v", names, err)
	}
	resume, err := s.Watch(ctx, 2, names...)
	if err != nil {
		t.Fatalf("Watch(2, %v) = %v", names, err)
	}
	want := []store.Event{
		{Type: store.EventSnapshot, Revision: b.GetRevision(), Name: "policies/b", Policy: b},
		{Type: store.EventSynced, Revision: 3},
	}
	got := []store.Event{nextEvent(t, w), nextEvent(t, w)}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("initial events of a watch by name mismatch (-want +got):\n%s", diff)
	}
	// 4..9: a, c and e change around b and d; more changes than the watch
	// buffer of a small store go by unseen.
	if _, err := s.Update(ctx, "policies/a", store.Precondition{}, setDescription("a2")); err != nil {
		t.Fatal(err)
	}
	b2, err := s.Update(ctx, "policies/b", store.Precondition{}, setDescription("b2"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := s.Update(ctx, "policies/c", store.Precondition{}, setDescription(strings.Repeat("c", i))); err != nil {
			t.Fatal(err)
		}
	}
	d := mustCreate(t, s, policy("policies/d"))
	if _, err := s.Delete(ctx, "policies/c", store.Precondition{}); err != nil {
		t.Fatal(err)
	}
	delRev, err := s.Delete(ctx, "policies/b", store.Precondition{})
	if err != nil {
		t.Fatal(err)
	}
	live := []store.Event{
		{Type: store.EventPut, Revision: b2.GetRevision(), Name: "policies/b", Policy: b2},
		{Type: store.EventPut, Revision: d.GetRevision(), Name: "policies/d", Policy: d},
		{Type: store.EventDelete, Revision: delRev, Name: "policies/b"},
	}
	got = nextChanges(t, w, len(live))
	if diff := cmp.Diff(live, got, protocmp.Transform()); diff != "" {
		t.Errorf("live events of a watch by name mismatch (-want +got):\n%s", diff)
	}
	mustCreate(t, s, policy("policies/a-later"))
	want = live // Watch(2) starts after b's create
	got = nextChanges(t, resume, len(want))
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("events of Watch(2) by name mismatch (-want +got):\n%s", diff)
	}
	// Nothing else arrives but progress up to the last change.
	last := mustRevision(t, s)
	for {
		select {
		case ev := <-w.Events():
			if ev.Type != store.EventProgress || ev.Policy != nil || ev.Revision > last {
				t.Fatalf("unexpected event %v %q at %d", ev.Type, ev.Name, ev.Revision)
			}
			if ev.Revision == last {
				return
			}
		case <-time.After(eventTimeout):
			t.Fatalf("no progress event up to revision %d", last)
		}
	}
}

// nextChanges returns the next n events of w other than EventProgress,
// checking that progress events carry increasing revisions and nothing
// else.
func nextChanges(t *testing.T, w store.Watch, n int) []store.Event {
	t.Helper()
	var out []store.Event
	var last int64
	for len(out) < n {
		ev := nextEvent(t, w)
		if ev.Revision < last {
			t.Fatalf("event at revision %d after %d", ev.Revision, last)
		}
		last = ev.Revision
		if ev.Type == store.EventProgress {
			if ev.Policy != nil || ev.Name != "" {
				t.Errorf("progress event with a policy or name: %+v", ev)
			}
			continue
		}
		out = append(out, ev)
	}
	return out
}

// testWatchMemory checks that watchers that stop reading during the
// initial state do not hold the store in memory: 10 stalled watchers over
// a store of about 4 MB must grow the heap by less than the store's size
// (decoding the whole state per watcher would take about 10 times it).
func testWatchMemory(t *testing.T, s store.Store) {
	const policies, origins = 100, 500 // ~40 KB each
	ctx := t.Context()
	for i := range policies {
		p := policy(name(i))
		for j := range origins {
			p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: "https://origin-" + strings.Repeat("x", 40) + "-" + itoa(j) + ".example.com"})
		}
		mustCreate(t, s, p)
	}
	storeSize := 0
	for _, p := range listAll(t, s, 10) {
		storeSize += protoSize(p)
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := heap()
	var watches []store.Watch
	for range 10 {
		w, err := s.Watch(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		nextEvent(t, w) // started, then stalled
		watches = append(watches, w)
	}
	time.Sleep(200 * time.Millisecond)                       // let them fill whatever they fill
	grown := int64(heap()/1024)*1024 - int64(base/1024)*1024 //nolint:gosec // G115: heap sizes are far below 2^63
	t.Logf("store %d bytes; 10 stalled watchers grew the heap by %d bytes", storeSize, grown)
	if grown > int64(storeSize) {
		t.Errorf("10 stalled watchers hold %d bytes, more than the whole store (%d): memory per watcher is not bounded", grown, storeSize)
	}
	runtime.KeepAlive(watches)
}

func itoa(i int) string { return strconv.Itoa(i) }

func protoSize(p *corsdv1.Policy) int { return proto.Size(p) }
