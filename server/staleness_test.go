package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

// unreachableStore is a real store whose revision probe can be made to
// fail as an unreachable etcd's does, or to run ahead of what the watch
// delivered, as a lagging snapshot sees it.
type unreachableStore struct {
	store.Store
	down atomic.Bool
	lag  atomic.Int64
}

func (u *unreachableStore) Revision(ctx context.Context) (int64, error) {
	if u.down.Load() {
		return 0, errors.New("test: etcd down")
	}
	rev, err := u.Store.Revision(ctx)
	return rev + u.lag.Load(), err
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestStaleness: while the store cannot be reached the server still
// decides, stays ready and says why on /readyz, logs the outage once, and
// its staleness metric grows; it falls back once the store answers and
// the snapshot holds its revision.
func TestStaleness(t *testing.T) {
	var logs syncBuffer
	us := &unreachableStore{}
	e := newEnv(t, envConfig{
		opts: []Option{WithTokens(testTokens...), WithStoreProbeInterval(20 * time.Millisecond), WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))},
		wrap: func(s store.Store) store.Store { us.Store = s; return us },
	})
	e.create("acme", &corsdv1.Policy{Origins: []*corsdv1.OriginRule{{Pattern: "https://a.example.com"}}})
	h := e.srv.HTTPHandler()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		body, _ := io.ReadAll(rec.Result().Body)
		return rec.Code, string(body)
	}
	metric := func(name string) string {
		_, body := get("/metrics")
		for line := range strings.Lines(body) {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				return strings.TrimSpace(v)
			}
		}
		t.Fatalf("no %s in /metrics", name)
		return ""
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; logs:\n%s", what, logs.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	fresh := func() bool { return e.srv.stale.stale() < 200*time.Millisecond }
	allowed := func() bool {
		return e.check(&corsdv1.CheckOriginRequest{Policy: "policies/acme", Method: "GET", Origin: "https://a.example.com"}).GetAllowed()
	}

	waitFor("a fresh snapshot", fresh)
	if got := metric("corsd_store_reachable"); got != "1" {
		t.Errorf("corsd_store_reachable = %s, want 1", got)
	}

	us.down.Store(true)
	waitFor("/readyz to report the outage", func() bool {
		code, body := get("/readyz")
		return code == http.StatusOK && strings.Contains(body, "store unreachable")
	})
	time.Sleep(300 * time.Millisecond)
	if got := metric("corsd_store_reachable"); got != "0" {
		t.Errorf("corsd_store_reachable during the outage = %s, want 0", got)
	}
	if s := e.srv.stale.stale(); s < 300*time.Millisecond {
		t.Errorf("staleness during the outage = %v, want it to grow (>= 300ms)", s)
	}
	if !allowed() {
		t.Error("no decision from the snapshot during the store outage")
	}
	if code, body := get("/readyz"); code != http.StatusOK || !strings.Contains(body, "deciding from revision 1") {
		t.Errorf("/readyz during the outage = %d %q, want 200 naming the snapshot's revision", code, body)
	}
	if n := strings.Count(logs.String(), "store unreachable; deciding from the last snapshot"); n != 1 {
		t.Errorf("%d outage log lines, want 1:\n%s", n, logs.String())
	}

	us.down.Store(false)
	waitFor("a fresh snapshot after the outage", fresh)
	if code, body := get("/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz after the outage = %d %q, want 200 ready", code, body)
	}
	if !strings.Contains(logs.String(), "store reachable again") {
		t.Errorf("no log line when the store came back:\n%s", logs.String())
	}

	// Reachable, but the snapshot lags the store: stale too.
	us.lag.Store(1)
	time.Sleep(300 * time.Millisecond)
	if s := e.srv.stale.stale(); s < 300*time.Millisecond {
		t.Errorf("staleness of a lagging snapshot = %v, want it to grow", s)
	}
	if got := metric("corsd_store_reachable"); got != "1" {
		t.Errorf("corsd_store_reachable while lagging = %s, want 1", got)
	}
	// The snapshot catches up with the revision the probes saw.
	us.lag.Store(0)
	e.create("other", &corsdv1.Policy{})
	waitFor("a fresh snapshot once it caught up", fresh)
}
