package storetest

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// testReplicaNoLostUpdate runs testNoLostUpdate's read-modify-write loops
// through two replicas at once.
func testReplicaNoLostUpdate(t *testing.T, a, b store.Store) {
	testNoLostUpdate(t, twoReplicas{Store: a, other: b, n: atomicCounter{new(atomic.Int64)}})
}

// twoReplicas sends every other Update to the second replica.
type twoReplicas struct {
	store.Store
	other store.Store
	n     atomicCounter
}

func (r twoReplicas) Update(ctx context.Context, name string, pre store.Precondition, mutate store.MutateFunc) (*corsdv1.Policy, error) {
	if r.n.next()%2 == 1 {
		return r.other.Update(ctx, name, pre, mutate)
	}
	return r.Store.Update(ctx, name, pre, mutate)
}

// testReplicaWatch checks that a watcher on one replica sees, in order and
// without gaps, the writes made through both.
func testReplicaWatch(t *testing.T, a, b store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	mustCreate(t, a, policy(name(0)))
	onA, onB := collect(t, ctx, a, 0), collect(t, ctx, b, 1)
	for i := 1; i < 30; i++ {
		s := a
		if i%3 == 0 {
			s = b
		}
		mustCreate(t, s, policy(name(i)))
		if _, err := s.Update(ctx, name(i-1), store.Precondition{}, setDescription("by replica")); err != nil {
			t.Fatal(err)
		}
	}
	final := mustRevision(t, b)
	if ra := mustRevision(t, a); ra != final {
		t.Errorf("replicas report revisions %d and %d", ra, final)
	}
	onA.waitFor(final)
	onB.waitFor(final)
	want := map[string]*corsdv1.Policy{}
	for _, p := range listAll(t, b, 100) {
		want[p.GetName()] = p
	}
	onA.mu.Lock()
	defer onA.mu.Unlock()
	if diff := cmp.Diff(want, onA.state, protocmp.Transform()); diff != "" {
		t.Errorf("state watched on replica a mismatch (-b's list +a's watch):\n%s", diff)
	}
}

type atomicCounter struct{ p *atomic.Int64 }

func (c atomicCounter) next() int64 { return c.p.Add(1) }
