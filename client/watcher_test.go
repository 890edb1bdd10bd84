package client_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corsd/corsd/client"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
	"github.com/corsd/corsd/store/boltstore"
)

const acme = "policies/acme"

// fastBackoff keeps reconnection tests short.
var fastBackoff = client.WithBackoff(10*time.Millisecond, 200*time.Millisecond)

func quietLogger() client.WatchOption {
	return client.WithLogger(slog.New(slog.DiscardHandler))
}

func createPolicy(t *testing.T, c *client.Client, id string, origins ...string) *corsdv1.Policy {
	t.Helper()
	p := &corsdv1.Policy{AllowedMethods: []string{"PUT"}}
	for _, o := range origins {
		p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: o})
	}
	resp, err := c.Policies().CreatePolicy(t.Context(), &corsdv1.CreatePolicyRequest{PolicyId: id, Policy: p})
	if err != nil {
		t.Fatalf("CreatePolicy(%s): %v", id, err)
	}
	return resp.GetPolicy()
}

func addOrigin(t *testing.T, c *client.Client, name, origin string) *corsdv1.Policy {
	t.Helper()
	resp, err := c.Policies().AddOrigin(t.Context(), &corsdv1.AddOriginRequest{Policy: name, Origin: &corsdv1.OriginRule{Pattern: origin}})
	if err != nil {
		t.Fatalf("AddOrigin(%s, %s): %v", name, origin, err)
	}
	return resp.GetPolicy()
}

// runWatcher runs w until the test ends.
func runWatcher(t *testing.T, w *client.Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// stoppableWatcher runs w and returns a function that stops it and waits.
func stoppableWatcher(t *testing.T, w *client.Watcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func waitReady(t *testing.T, w *client.Watcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := w.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
}

// allows reports whether h lets origin read a GET response.
func allows(h http.Handler, origin string) bool {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, newRequest("GET", "http://api.example.com/", http.Header{"Origin": {origin}}))
	return w.Header().Get("Access-Control-Allow-Origin") == origin
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWatcherPropagation measures the delay from an admin call's return to
// the middleware applying the change.
func TestWatcherPropagation(t *testing.T) {
	d := newCorsd(t)
	admin := d.client()
	createPolicy(t, admin, "acme", "https://a.example.com")
	w, err := client.NewWatcher(d.client(), []string{acme}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	waitReady(t, w)
	h := w.Middleware(acme)(inner)
	if !allows(h, "https://a.example.com") {
		t.Fatal("the initial snapshot does not allow https://a.example.com")
	}

	const changes = 20
	delays := make([]time.Duration, 0, changes)
	for i := range changes {
		origin := fmt.Sprintf("https://o%d.example.com", i)
		if allows(h, origin) {
			t.Fatalf("%s allowed before it was added", origin)
		}
		addOrigin(t, admin, acme, origin)
		returned := time.Now()
		for !allows(h, origin) {
			if time.Since(returned) > 5*time.Second {
				t.Fatalf("%s still refused 5s after AddOrigin returned", origin)
			}
			time.Sleep(50 * time.Microsecond)
		}
		delays = append(delays, time.Since(returned))
	}
	slices.Sort(delays)
	median, worst := delays[len(delays)/2], delays[len(delays)-1]
	t.Logf("propagation delay from AddOrigin's return to the middleware allowing, %d changes: median %v, p90 %v, max %v",
		changes, median, delays[len(delays)*9/10], worst)
	if median > 100*time.Millisecond {
		t.Errorf("median propagation delay %v, want < 100ms", median)
	}
}

// TestWatcherSurvivesRestart: while corsd is down the middleware keeps
// deciding from its snapshot; changes made meanwhile arrive after corsd
// restarts, through a stream resumed from the watcher's revision.
func TestWatcherSurvivesRestart(t *testing.T) {
	d := newCorsd(t)
	admin := d.client()
	createPolicy(t, admin, "acme", "https://a.example.com")
	w, err := client.NewWatcher(d.client(), []string{acme}, fastBackoff, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	waitReady(t, w)
	h := w.Middleware(acme)(inner)
	rev := w.Revision()

	d.stop()
	// corsd is down: the snapshot still decides.
	for range 3 {
		if !allows(h, "https://a.example.com") {
			t.Fatal("corsd down: https://a.example.com refused, want the snapshot to keep allowing it")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := w.Staleness(); s < 100*time.Millisecond {
		t.Errorf("corsd down for 150ms: Staleness() = %v, want ≥ 100ms", s)
	}

	// Changes made while corsd is down, straight in its database.
	st, err := boltstore.Open(d.db)
	if err != nil {
		t.Fatal(err)
	}
	ctx := store.WithActor(t.Context(), "test")
	for _, o := range []string{"https://b.example.com", "https://c.example.com"} {
		if _, err := st.Update(ctx, acme, store.Precondition{}, func(p *corsdv1.Policy) error {
			p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: o})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Create(ctx, &corsdv1.Policy{Name: "policies/other"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if allows(h, "https://b.example.com") {
		t.Fatal("https://b.example.com allowed before corsd came back")
	}

	d.start()
	eventually(t, 10*time.Second, "changes made while corsd was down never arrived", func() bool {
		return allows(h, "https://b.example.com") && allows(h, "https://c.example.com")
	})
	if !allows(h, "https://a.example.com") {
		t.Error("https://a.example.com refused after the restart")
	}
	starts := d.watchStarts()
	if len(starts) < 2 || starts[0] != 0 || starts[len(starts)-1] != rev || slices.Contains(starts[1:], 0) {
		t.Errorf("WatchPolicies start revisions = %v, want [0 %d ...%d]: a resume from revision %d, never a resync", starts, rev, rev, rev)
	}
	if got := w.Policy("policies/other"); got != nil {
		t.Error("the watcher holds policies/other, which it does not watch")
	}
	eventually(t, 5*time.Second, "Staleness never fell back after the restart", func() bool {
		return w.Staleness() < 100*time.Millisecond
	})
}

// TestWatcherResyncsAfterCompaction: when the watcher's revision has been
// compacted away while corsd was down, it resyncs from revision 0 and ends
// with the current state, deletions included.
func TestWatcherResyncsAfterCompaction(t *testing.T) {
	d := newCorsd(t, boltstore.WithRetention(2, 0))
	admin := d.client()
	createPolicy(t, admin, "acme", "https://a.example.com")
	createPolicy(t, admin, "beta", "https://beta.example.com")
	w, err := client.NewWatcher(d.client(), []string{acme, "policies/beta"}, fastBackoff, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	waitReady(t, w)
	rev := w.Revision()
	if w.Policy("policies/beta") == nil {
		t.Fatal("policies/beta missing from the snapshot")
	}

	d.stop()
	st, err := boltstore.Open(d.db, boltstore.WithRetention(2, 0))
	if err != nil {
		t.Fatal(err)
	}
	ctx := store.WithActor(t.Context(), "test")
	for i := range 5 {
		o := fmt.Sprintf("https://n%d.example.com", i)
		if _, err := st.Update(ctx, acme, store.Precondition{}, func(p *corsdv1.Policy) error {
			p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: o})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Delete(ctx, "policies/beta", store.Precondition{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Changes(ctx, store.ChangesQuery{Since: rev}); err == nil {
		t.Fatalf("the store still holds the changes after revision %d; the test needs them compacted", rev)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	d.start()
	h := w.Middleware(acme)(inner)
	eventually(t, 10*time.Second, "the watcher never caught up after the compaction", func() bool {
		return allows(h, "https://n4.example.com") && w.Policy("policies/beta") == nil
	})
	for i := range 5 {
		if o := fmt.Sprintf("https://n%d.example.com", i); !allows(h, o) {
			t.Errorf("%s refused after the resync", o)
		}
	}
	starts := d.watchStarts()
	want := []int64{0, rev, 0}
	if !slices.Equal(starts, want) {
		t.Errorf("WatchPolicies start revisions = %v, want %v (sync, resume refused as compacted, resync)", starts, want)
	}
}

// TestWatcherCacheFile: a watcher restarted while corsd is down decides at
// once from its cache file, then resumes from the cached revision.
func TestWatcherCacheFile(t *testing.T) {
	d := newCorsd(t)
	admin := d.client()
	createPolicy(t, admin, "acme", "https://a.example.com")
	cache := filepath.Join(t.TempDir(), "cors-cache.json")

	w1, err := client.NewWatcher(d.client(), []string{acme}, client.WithCacheFile(cache), fastBackoff, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if w1.Ready() {
		t.Fatal("Ready() before any snapshot and without a cache file")
	}
	stop := stoppableWatcher(t, w1)
	waitReady(t, w1)
	addOrigin(t, admin, acme, "https://b.example.com")
	rev := addOrigin(t, admin, acme, "https://c.example.com").GetRevision()
	eventually(t, 5*time.Second, "the watcher never reached the last revision", func() bool { return w1.Revision() >= rev })
	stop() // flushes the cache
	fi, err := os.Stat(cache)
	if err != nil {
		t.Fatalf("cache file: %v", err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("cache file mode = %v, want 0600", mode)
	}
	if tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(cache), ".*tmp*")); len(tmps) > 0 {
		t.Errorf("temporary files left behind: %v", tmps)
	}
	d.stop()

	// A restarted service, corsd still down.
	var logs bytes.Buffer
	w2, err := client.NewWatcher(d.client(), []string{acme}, client.WithCacheFile(cache), fastBackoff,
		client.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if !w2.Ready() {
		t.Fatalf("not Ready() with a cache file; logs:\n%s", logs.String())
	}
	if got := w2.Revision(); got != rev {
		t.Errorf("Revision() from the cache = %d, want %d", got, rev)
	}
	h := w2.Middleware(acme)(inner)
	for _, o := range []string{"https://a.example.com", "https://b.example.com", "https://c.example.com"} {
		if !allows(h, o) {
			t.Errorf("from the cache: %s refused", o)
		}
	}
	pre := httptest.NewRecorder()
	h.ServeHTTP(pre, newRequest("OPTIONS", "http://api.example.com/", http.Header{"Origin": {"https://a.example.com"}, "Access-Control-Request-Method": {"PUT"}}))
	if pre.Code != http.StatusNoContent {
		t.Errorf("preflight from the cache: status %d, want 204", pre.Code)
	}

	// A change made while both were down arrives once corsd is back,
	// through a resume from the cached revision.
	st, err := boltstore.Open(d.db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Update(store.WithActor(t.Context(), "test"), acme, store.Precondition{}, func(p *corsdv1.Policy) error {
		p.Origins = append(p.Origins, &corsdv1.OriginRule{Pattern: "https://d.example.com"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	d.start()
	runWatcher(t, w2)
	eventually(t, 10*time.Second, "the change made while down never arrived", func() bool { return allows(h, "https://d.example.com") })
	if starts := d.watchStarts(); starts[len(starts)-1] != rev {
		t.Errorf("WatchPolicies start revisions = %v, want the last one to be the cached revision %d", starts, rev)
	}
}

func TestWatcherIgnoresBadCacheFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		names   []string
		wantLog string
	}{
		{name: "garbage", content: "{not json", names: []string{acme}, wantLog: "ignoring corrupt cache file"},
		{name: "truncated", content: `{"format":"corsd-client-cache/v1","revision":3,"names":["policies/acme"],"policies":[{"name":"policies/ac`, names: []string{acme}, wantLog: "ignoring corrupt cache file"},
		{name: "other format", content: `{"format":"something-else","revision":3,"names":[],"policies":[]}`, names: nil, wantLog: "ignoring corrupt cache file"},
		{name: "invalid policy", content: `{"format":"corsd-client-cache/v1","revision":3,"names":["policies/acme"],"policies":[{"name":"policies/acme","origins":[{"pattern":"https://x.example.com/path"}]}]}`, names: []string{acme}, wantLog: "ignoring corrupt cache file"},
		{name: "other names", content: `{"format":"corsd-client-cache/v1","revision":3,"names":["policies/beta"],"policies":[]}`, names: []string{acme}, wantLog: "ignoring cache file written for other policies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := filepath.Join(t.TempDir(), "cache.json")
			if err := os.WriteFile(cache, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			c, err := client.Dial("127.0.0.1:1")
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			w, err := client.NewWatcher(c, tt.names, client.WithCacheFile(cache), client.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			if err != nil {
				t.Fatal(err)
			}
			if w.Ready() {
				t.Error("Ready() with a bad cache file")
			}
			if !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("logs = %q, want a warning containing %q", logs.String(), tt.wantLog)
			}
		})
	}
}

// TestWatcherRewritesCorruptCache: a corrupt cache is ignored, then
// replaced by a good one once corsd answers.
func TestWatcherRewritesCorruptCache(t *testing.T) {
	d := newCorsd(t)
	createPolicy(t, d.client(), "acme", "https://a.example.com")
	cache := filepath.Join(t.TempDir(), "cache.json")
	if err := os.WriteFile(cache, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := client.NewWatcher(d.client(), []string{acme}, client.WithCacheFile(cache), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	stop := stoppableWatcher(t, w)
	waitReady(t, w)
	stop()
	w2, err := client.NewWatcher(d.client(), []string{acme}, client.WithCacheFile(cache), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if !w2.Ready() || w2.Policy(acme) == nil {
		t.Error("the rewritten cache file did not load")
	}
}

func TestWatcherWatchesEverything(t *testing.T) {
	d := newCorsd(t)
	admin := d.client()
	createPolicy(t, admin, "acme", "https://a.example.com")
	w, err := client.NewWatcher(d.client(), nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	waitReady(t, w)
	createPolicy(t, admin, "beta", "https://b.example.com")
	eventually(t, 5*time.Second, "policies/beta never arrived", func() bool { return w.Policy("policies/beta") != nil })
	if _, err := admin.Policies().DeletePolicy(t.Context(), &corsdv1.DeletePolicyRequest{Name: acme}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the deleted policies/acme stayed", func() bool { return w.Policy(acme) == nil })
}

func TestWatcherRunTwice(t *testing.T) {
	d := newCorsd(t)
	w, err := client.NewWatcher(d.client(), []string{acme}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	waitReady(t, w)
	if err := w.Run(t.Context()); err == nil {
		t.Error("a second concurrent Run returned nil, want an error")
	}
}

func TestWatcherStalenessWithProgress(t *testing.T) {
	d := newCorsd(t) // progress every 50ms
	createPolicy(t, d.client(), "acme", "https://a.example.com")
	w, err := client.NewWatcher(d.client(), []string{acme}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	waitReady(t, w)
	time.Sleep(300 * time.Millisecond)
	if s := w.Staleness(); s > 200*time.Millisecond {
		t.Errorf("idle but connected for 300ms with progress every 50ms: Staleness() = %v, want < 200ms", s)
	}
}

func TestNewWatcherErrors(t *testing.T) {
	c, err := client.Dial("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	tests := []struct {
		name  string
		c     *client.Client
		names []string
		opts  []client.WatchOption
	}{
		{name: "nil client", c: nil},
		{name: "zero backoff", c: c, opts: []client.WatchOption{client.WithBackoff(0, time.Second)}},
		{name: "max below initial", c: c, opts: []client.WatchOption{client.WithBackoff(time.Second, time.Millisecond)}},
		{name: "bare id", c: c, names: []string{"acme"}},
		{name: "empty id", c: c, names: []string{"policies/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := client.NewWatcher(tt.c, tt.names, tt.opts...); err == nil {
				t.Error("NewWatcher succeeded, want an error")
			}
		})
	}
}
