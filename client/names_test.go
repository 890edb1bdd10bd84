package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corsd/corsd/client"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// logRecorder is a slog.Handler that keeps every record's level, message
// and "policy" attribute.
type logRecorder struct {
	mu   sync.Mutex
	recs []logRec
}

type logRec struct {
	level  slog.Level
	msg    string
	policy string
}

func (*logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler     { return l }
func (l *logRecorder) WithGroup(string) slog.Handler          { return l }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := logRec{level: r.Level, msg: r.Message}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "policy" {
			rec.policy = a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, rec)
	l.mu.Unlock()
	return nil
}

// count returns how many records at level name policy and contain substr.
func (l *logRecorder) count(level slog.Level, policy, substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if r.level == level && r.policy == policy && strings.Contains(r.msg, substr) {
			n++
		}
	}
	return n
}

func (l *logRecorder) option() client.WatchOption { return client.WithLogger(slog.New(l)) }

func TestNewMiddlewareUnknownPolicy(t *testing.T) {
	d := newCorsd(t)
	admin := d.client()
	createPolicy(t, admin, "acme", "https://a.example.com")

	all, err := client.NewWatcher(d.client(), nil, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, all)
	waitReady(t, all)
	some, err := client.NewWatcher(d.client(), []string{acme, "policies/ghost"}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, some)
	waitReady(t, some)
	idle, err := client.NewWatcher(d.client(), []string{acme}, quietLogger()) // never run: not ready
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Compile(policy.Config{Name: acme, Origins: []policy.Origin{{Pattern: "https://a.example.com"}}})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name        string
		src         client.PolicySource
		policy      string
		wantErr     bool
		wantUnknown bool
	}{
		{name: "ready watcher of every policy, existing", src: all, policy: acme},
		{name: "ready watcher of every policy, unknown", src: all, policy: "policies/acmee", wantErr: true, wantUnknown: true},
		{name: "ready watcher, watched and existing", src: some, policy: acme},
		{name: "ready watcher, watched but absent", src: some, policy: "policies/ghost", wantErr: true, wantUnknown: true},
		{name: "ready watcher, not watched", src: some, policy: "policies/other", wantErr: true, wantUnknown: true},
		{name: "watcher not ready, watched", src: idle, policy: acme},
		{name: "watcher not ready, not watched", src: idle, policy: "policies/other", wantErr: true, wantUnknown: true},
		{name: "static source", src: client.StaticSource(p), policy: acme},
		{name: "static source without a policy", src: client.StaticSource(nil), policy: acme, wantErr: true, wantUnknown: true},
		{name: "not a policy name", src: all, policy: "acme", wantErr: true},
		{name: "nil source", src: nil, policy: acme, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mw, err := client.NewMiddleware(tt.policy, tt.src)
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewMiddleware(%q) error = %v, want error: %v", tt.policy, err, tt.wantErr)
			}
			if got := errors.Is(err, client.ErrUnknownPolicy); got != tt.wantUnknown {
				t.Errorf("NewMiddleware(%q) error = %v; errors.Is(err, ErrUnknownPolicy) = %v, want %v", tt.policy, err, got, tt.wantUnknown)
			}
			if (mw == nil) != tt.wantErr {
				t.Errorf("NewMiddleware(%q) middleware nil = %v, want %v", tt.policy, mw == nil, tt.wantErr)
			}
			if w, ok := tt.src.(*client.Watcher); ok {
				_, werr := w.NewMiddleware(tt.policy)
				if (werr != nil) != (err != nil) {
					t.Errorf("Watcher.NewMiddleware(%q) error = %v, NewMiddleware error = %v", tt.policy, werr, err)
				}
			}
		})
	}
}

// TestWatcherLogsMissingPolicies follows a watched name that does not exist
// and a watched policy that is deleted, then created again.
func TestWatcherLogsMissingPolicies(t *testing.T) {
	const ghost = "policies/ghost"
	d := newCorsd(t)
	admin := d.client()
	createPolicy(t, admin, "acme", "https://a.example.com")

	var logs logRecorder
	w, err := client.NewWatcher(d.client(), []string{acme, ghost}, logs.option(), fastBackoff)
	if err != nil {
		t.Fatal(err)
	}
	// Not ready yet: construction succeeds and the middleware fails closed.
	h, err := w.NewMiddleware(ghost)
	if err != nil {
		t.Fatalf("NewMiddleware(%s) before the first snapshot: %v", ghost, err)
	}
	acmeMW, err := w.NewMiddleware(acme)
	if err != nil {
		t.Fatalf("NewMiddleware(%s): %v", acme, err)
	}
	preflight := func(h http.Handler) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, newRequest("OPTIONS", "http://api.example.com/", http.Header{
			"Origin": {"https://a.example.com"}, "Access-Control-Request-Method": {"PUT"},
		}))
		return rec.Code
	}
	if code := preflight(h(inner)); code != http.StatusServiceUnavailable {
		t.Errorf("preflight before the first snapshot: status %d, want 503", code)
	}

	runWatcher(t, w)
	waitReady(t, w)
	eventually(t, 5*time.Second, "no warning for the absent watched name", func() bool {
		return logs.count(slog.LevelWarn, ghost, "does not exist") > 0
	})
	if n := logs.count(slog.LevelWarn, acme, ""); n != 0 {
		t.Errorf("%d warnings for %s, which exists", n, acme)
	}

	ah := acmeMW(inner)
	if !allows(ah, "https://a.example.com") {
		t.Fatal("the snapshot does not allow https://a.example.com")
	}
	if _, err := admin.Policies().DeletePolicy(t.Context(), &corsdv1.DeletePolicyRequest{Name: acme}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "no log line for the deleted policy", func() bool {
		return logs.count(slog.LevelWarn, acme, "disappeared") > 0
	})
	if allows(ah, "https://a.example.com") {
		t.Error("the middleware of a deleted policy still allows https://a.example.com")
	}

	createPolicy(t, admin, "acme", "https://a.example.com")
	eventually(t, 5*time.Second, "no log line for the policy created again", func() bool {
		return logs.count(slog.LevelInfo, acme, "now exists") > 0
	})
	// Force a later change through the stream, then count: each name was
	// logged once, however many snapshots followed.
	rev := addOrigin(t, admin, acme, "https://b.example.com").GetRevision()
	eventually(t, 5*time.Second, "the watcher never reached the last revision", func() bool { return w.Revision() >= rev })
	if n := logs.count(slog.LevelWarn, ghost, "does not exist"); n != 1 {
		t.Errorf("%d warnings for %s, want 1", n, ghost)
	}
	if n := logs.count(slog.LevelWarn, acme, "disappeared"); n != 1 {
		t.Errorf("%d disappearance warnings for %s, want 1", n, acme)
	}
}

// TestMiddlewareUnknownPolicyLogs checks that the unchecked Middleware of a
// Watcher still logs a name its snapshot lacks.
func TestMiddlewareUnknownPolicyLogs(t *testing.T) {
	d := newCorsd(t)
	createPolicy(t, d.client(), "acme", "https://a.example.com")
	tests := []struct {
		name    string
		watched []string
		policy  string
		msg     string
	}{
		{name: "watcher of every policy", policy: "policies/acmee", msg: "does not exist"},
		{name: "name not watched", watched: []string{acme}, policy: "policies/other", msg: "does not watch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logRecorder
			w, err := client.NewWatcher(d.client(), tt.watched, logs.option())
			if err != nil {
				t.Fatal(err)
			}
			_ = w.Middleware(tt.policy)
			_ = client.Middleware(tt.policy, w) // the same name again: no second line
			runWatcher(t, w)
			waitReady(t, w)
			eventually(t, 5*time.Second, "no warning for "+tt.policy, func() bool {
				return logs.count(slog.LevelWarn, tt.policy, tt.msg) > 0
			})
			if n := logs.count(slog.LevelWarn, tt.policy, ""); n != 1 {
				t.Errorf("%d warnings for %s, want 1", n, tt.policy)
			}
		})
	}
}

// TestWatcherLogsPolicyGoneWhileAway: a policy deleted while the service was
// down is in its cache file but not in corsd's first snapshot.
func TestWatcherLogsPolicyGoneWhileAway(t *testing.T) {
	d := newCorsd(t)
	admin := d.client()
	createPolicy(t, admin, "acme", "https://a.example.com")
	cache := filepath.Join(t.TempDir(), "cache.json")
	w1, err := client.NewWatcher(d.client(), []string{acme}, client.WithCacheFile(cache), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	stop := stoppableWatcher(t, w1)
	waitReady(t, w1)
	stop() // flushes the cache
	if _, err := admin.Policies().DeletePolicy(t.Context(), &corsdv1.DeletePolicyRequest{Name: acme}); err != nil {
		t.Fatal(err)
	}

	var logs logRecorder
	w2, err := client.NewWatcher(d.client(), []string{acme}, client.WithCacheFile(cache), logs.option())
	if err != nil {
		t.Fatal(err)
	}
	if !w2.Ready() {
		t.Fatal("not ready from the cache file")
	}
	if _, err := w2.NewMiddleware(acme); err != nil {
		t.Fatalf("NewMiddleware(%s) with %s in the cache file: %v", acme, acme, err)
	}
	runWatcher(t, w2)
	eventually(t, 5*time.Second, "no log line for the policy deleted while away", func() bool {
		return logs.count(slog.LevelWarn, acme, "disappeared") > 0
	})
	if _, err := w2.NewMiddleware(acme); !errors.Is(err, client.ErrUnknownPolicy) {
		t.Errorf("NewMiddleware(%s) after corsd's snapshot: error = %v, want ErrUnknownPolicy", acme, err)
	}
}
