package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

func withHosts(p *corsdv1.Policy, hosts ...string) *corsdv1.Policy {
	p.Hosts = hosts
	return p
}

func setHosts(hosts ...string) store.MutateFunc {
	return func(p *corsdv1.Policy) error {
		p.Hosts = hosts
		return nil
	}
}

// wantHostConflict checks that err is a *store.HostConflictError for
// hosts[index] owned by owner, and that it wraps store.ErrExists.
func wantHostConflict(t *testing.T, call string, err error, index int, owner string) {
	t.Helper()
	hce, ok := errors.AsType[*store.HostConflictError](err)
	if !ok || !errors.Is(err, store.ErrExists) {
		t.Errorf("%s = %v, want a *store.HostConflictError wrapping ErrExists", call, err)
		return
	}
	if hce.Index != index || hce.Owner != owner {
		t.Errorf("%s = conflict on hosts[%d] owned by %q, want hosts[%d] owned by %q", call, hce.Index, hce.Owner, index, owner)
	}
}

func testHostUniqueness(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, withHosts(policy("policies/a"), "api.example.com", "*.apps.example.com"))
	mustCreate(t, s, withHosts(policy("policies/b"), "b.example.com"))
	before := capture(t, s)

	_, err := s.Create(ctx, withHosts(policy("policies/c"), "c.example.com", "API.example.com"))
	wantHostConflict(t, "Create(c with a's host in another case)", err, 1, "policies/a")
	_, err = s.Create(ctx, withHosts(policy("policies/c"), "*.apps.example.com"))
	wantHostConflict(t, "Create(c with a's wildcard)", err, 0, "policies/a")
	_, err = s.Update(ctx, "policies/b", store.Precondition{}, setHosts("b.example.com", "api.example.com"))
	wantHostConflict(t, "Update(b takes a's host)", err, 1, "policies/a")
	assertUnchanged(t, s, before)

	// A policy keeps, reorders or repeats its own hosts freely.
	if _, err := s.Update(ctx, "policies/a", store.Precondition{}, setHosts("*.apps.example.com", "api.example.com")); err != nil {
		t.Fatalf("Update(a keeps its hosts) = %v", err)
	}
	// A host given up is free at once, in the next write.
	if _, err := s.Update(ctx, "policies/a", store.Precondition{}, setHosts("*.apps.example.com")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, "policies/b", store.Precondition{}, setHosts("b.example.com", "api.example.com")); err != nil {
		t.Errorf("Update(b takes the host a gave up) = %v", err)
	}
	// A deleted policy's hosts are free; a subdomain is not the wildcard.
	if _, err := s.Delete(ctx, "policies/a", store.Precondition{}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, withHosts(policy("policies/c"), "*.apps.example.com", "x.apps.example.com"))
	_, err = s.Create(ctx, withHosts(policy("policies/d"), "B.EXAMPLE.COM"))
	wantHostConflict(t, "Create(d with b's host)", err, 0, "policies/b")
}

// testConcurrentClaims races writers (half through a, half through b,
// which may be the same store) that create policies claiming one host, or
// one name: exactly one of each race wins, the others fail with ErrExists
// and write nothing.
func testConcurrentClaims(t *testing.T, a, b store.Store) {
	const writers, rounds = 8, 5
	ctx := t.Context()
	for round := range rounds {
		host := fmt.Sprintf("race%d.example.com", round)
		var wg sync.WaitGroup
		hostWins := make(chan string, writers)
		nameWins := make(chan string, writers)
		errs := make(chan error, 2*writers)
		for i := range writers {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				n := fmt.Sprintf("policies/r%d-w%d", round, i)
				switch p, err := s.Create(ctx, withHosts(policy(n), "own"+n[9:]+".example.com", host)); {
				case err == nil:
					hostWins <- p.GetName()
				case !errors.Is(err, store.ErrExists):
					errs <- fmt.Errorf("Create(%s) = %w, want success or ErrExists", n, err)
				}
				n = fmt.Sprintf("policies/r%d-same", round)
				switch p, err := s.Create(ctx, policy(n)); {
				case err == nil:
					nameWins <- p.GetName()
				case !errors.Is(err, store.ErrExists):
					errs <- fmt.Errorf("Create(%s) = %w, want success or ErrExists", n, err)
				}
			})
		}
		wg.Wait()
		close(hostWins)
		close(nameWins)
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := len(hostWins); n != 1 {
			t.Errorf("round %d: %d creates claiming %s succeeded, want exactly 1", round, n, host)
		}
		if n := len(nameWins); n != 1 {
			t.Errorf("round %d: %d creates of one name succeeded, want exactly 1", round, n)
		}
	}
	// Nothing half-written: one policy per winner, one change per write,
	// dense revisions, on both sides.
	for _, s := range []store.Store{a, b} {
		st := capture(t, s)
		if len(st.Policies) != 2*rounds || len(st.Changes) != 2*rounds || st.Revision != 2*rounds {
			t.Errorf("after the races: %d policies, %d changes, revision %d; want %d each", len(st.Policies), len(st.Changes), st.Revision, 2*rounds)
		}
		for i, c := range st.Changes {
			if c.GetRevision() != int64(i+1) {
				t.Errorf("change %d has revision %d", i, c.GetRevision())
			}
		}
	}
}
