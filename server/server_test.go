package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
)

func TestOversizedCalls(t *testing.T) {
	e := newTokenEnv(t)
	big := strings.Repeat("x", MaxRecvMsgSize+1)
	_, err := e.policy.CreatePolicy(e.admin(), &corsdv1.CreatePolicyRequest{PolicyId: "big", Policy: &corsdv1.Policy{Description: big}})
	wantCode(t, err, codes.ResourceExhausted)

	// Metadata past MaxHeaderListSize: refused (the client learns the
	// limit from the server's settings), never a crash.
	ctx := metadata.AppendToOutgoingContext(e.admin(), "x-padding", strings.Repeat("p", MaxHeaderListSize+1))
	_, err = e.dec.CheckOrigin(ctx, &corsdv1.CheckOriginRequest{Method: "GET"})
	if status.Code(err) == codes.OK {
		t.Errorf("CheckOrigin with %d bytes of metadata succeeded", MaxHeaderListSize+1)
	}
	// The server still serves.
	if _, err := e.dec.CheckOrigin(e.admin(), &corsdv1.CheckOriginRequest{Method: "GET"}); err != nil {
		t.Errorf("CheckOrigin after oversized calls: %v", err)
	}
	if _, err := e.policy.CreatePolicy(e.admin(), &corsdv1.CreatePolicyRequest{PolicyId: "small", Policy: &corsdv1.Policy{Description: big[:1000]}}); err != nil {
		t.Errorf("CreatePolicy after oversized calls: %v", err)
	}
}

func TestHTTPHandler(t *testing.T) {
	gate := make(chan struct{})
	e := newEnv(t, envConfig{noWait: true, opts: []Option{WithTokens(testTokens...)}, wrap: func(s store.Store) store.Store { return &gatedStore{Store: s, open: gate} }})
	h := e.srv.HTTPHandler()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		body, _ := io.ReadAll(rec.Result().Body)
		return rec.Code, string(body)
	}
	healthStatus := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := healthpb.NewHealthClient(e.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "corsd.v1.DecisionService"})
		if err != nil {
			t.Fatalf("health Check: %v", err)
		}
		return resp.GetStatus()
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while loading = %d, want 200", code)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while loading = %d %q, want 503", code, body)
	}
	if got := healthStatus(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health while loading = %v, want NOT_SERVING", got)
	}
	close(gate)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz when loaded = %d, want 200", code)
	}
	if got := healthStatus(); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health when loaded = %v, want SERVING", got)
	}

	e.create("acme", acme())
	for range 3 {
		e.check(&corsdv1.CheckOriginRequest{Policy: "policies/acme", Method: "GET", Origin: "https://evil.example"})
	}
	e.check(&corsdv1.CheckOriginRequest{Method: "GET", Origin: "https://evil.example"})
	code, body := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`corsd_decisions_total{kind="actual",policy="policies/acme",reason="origin_not_allowed",result="refused"} 3`,
		`corsd_decisions_total{kind="actual",policy="none",reason="no_policy",result="refused"} 1`,
		`corsd_decision_duration_seconds_bucket{le="+Inf"}`,
		`corsd_snapshot_policies 1`,
		`corsd_snapshot_revision 1`,
		`corsd_store_write_duration_seconds_count{op="create"} 1`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="CheckOrigin",grpc_service="corsd.v1.DecisionService",grpc_type="unary"} 4`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Deleting a policy drops its decision series.
	if _, err := e.policy.DeletePolicy(e.admin(), &corsdv1.DeletePolicyRequest{Name: "policies/acme"}); err != nil {
		t.Fatal(err)
	}
	if _, body := get("/metrics"); strings.Contains(body, `policy="policies/acme"`) {
		t.Errorf("/metrics still has series of the deleted policy")
	}

	e.srv.Shutdown()
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz after Shutdown = %d %q, want 503 shutting down", code, body)
	}
	if got := healthStatus(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health after Shutdown = %v, want NOT_SERVING", got)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after Shutdown = %d, want 200", code)
	}
}

// panicStore panics in Get.
type panicStore struct{ store.Store }

func (panicStore) Get(context.Context, string) (*corsdv1.Policy, error) { panic("boom") }

// failStore fails Get with an error the server does not know.
type failStore struct{ store.Store }

func (failStore) Get(context.Context, string) (*corsdv1.Policy, error) {
	return nil, fmt.Errorf("disk on fire: %w", errInjected)
}

func TestInternalErrors(t *testing.T) {
	tests := []struct {
		name string
		wrap func(store.Store) store.Store
	}{
		{name: "panic", wrap: func(s store.Store) store.Store { return panicStore{s} }},
		{name: "unknown error", wrap: func(s store.Store) store.Store { return failStore{s} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envConfig{opts: []Option{WithTokens(testTokens...)}, wrap: tt.wrap})
			_, err := e.policy.GetPolicy(e.admin(), &corsdv1.GetPolicyRequest{Name: "policies/acme"})
			st := wantCode(t, err, codes.Internal)
			if st.Message() != "internal error" {
				t.Errorf("message %q leaks detail; want %q", st.Message(), "internal error")
			}
			// The server survives.
			if _, err := e.dec.CheckOrigin(e.admin(), &corsdv1.CheckOriginRequest{Method: "GET"}); err != nil {
				t.Errorf("CheckOrigin after the fault: %v", err)
			}
		})
	}
}

func TestToStatus(t *testing.T) {
	fieldErr := errors.Join(&policy.FieldError{Field: "origins[0].pattern", Value: "x", Reason: "bad", Fix: "fix it"}, &policy.FieldError{Field: "max_age", Reason: "too long"})
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{name: "nil", err: nil, want: codes.OK},
		{name: "field errors", err: fmt.Errorf("wrapped: %w", fieldErr), want: codes.InvalidArgument},
		{name: "bad request", err: badField("name", "x", "is bad", ""), want: codes.InvalidArgument},
		{name: "not found", err: fmt.Errorf("x: %w", store.ErrNotFound), want: codes.NotFound},
		{name: "exists", err: store.ErrExists, want: codes.AlreadyExists},
		{name: "conflict", err: store.ErrConflict, want: codes.Aborted},
		{name: "compacted", err: store.ErrCompacted, want: codes.OutOfRange},
		{name: "store invalid argument", err: store.ErrInvalidArgument, want: codes.InvalidArgument},
		{name: "too slow", err: store.ErrWatchTooSlow, want: codes.Unavailable},
		{name: "closed", err: store.ErrClosed, want: codes.Unavailable},
		{name: "store unavailable", err: fmt.Errorf("etcdstore: get: %w", store.ErrUnavailable), want: codes.Unavailable},
		{name: "host conflict", err: fmt.Errorf("x: %w", &store.HostConflictError{Index: 1, Host: "a.example", Owner: "policies/a"}), want: codes.AlreadyExists},
		{name: "restore into a store in use", err: store.ErrNotEmpty, want: codes.FailedPrecondition},
		{name: "canceled", err: fmt.Errorf("x: %w", context.Canceled), want: codes.Canceled},
		{name: "deadline", err: context.DeadlineExceeded, want: codes.DeadlineExceeded},
		{name: "status passes through", err: status.Error(codes.ResourceExhausted, "x"), want: codes.ResourceExhausted},
		{name: "unknown", err: errInjected, want: codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toStatus(context.Background(), tt.err)
			if status.Code(got) != tt.want {
				t.Errorf("toStatus(%v) = %v, want code %v", tt.err, got, tt.want)
			}
		})
	}
	st, _ := status.FromError(toStatus(context.Background(), fieldErr))
	got := violations(t, st)
	if len(got) != 2 || got["policy.origins[0].pattern"] != "bad; fix it" || got["policy.max_age"] != "too long" {
		t.Errorf("violations = %v", got)
	}
	if !strings.Contains(st.Message(), "policy.origins[0].pattern: bad") {
		t.Errorf("message %q does not name the field", st.Message())
	}
}

// flakyStore lets a test cut the server's watch streams and refuse resumed
// watches as compacted.
type flakyStore struct {
	store.Store
	mu        sync.Mutex
	cuts      []chan struct{}
	compacted bool // fail the next Watch(since > 0) with ErrCompacted
	watches   []int64
}

func (f *flakyStore) Watch(ctx context.Context, since int64, names ...string) (store.Watch, error) {
	f.mu.Lock()
	f.watches = append(f.watches, since)
	if since > 0 && f.compacted {
		f.compacted = false
		f.mu.Unlock()
		return nil, store.ErrCompacted
	}
	cut := make(chan struct{})
	f.cuts = append(f.cuts, cut)
	f.mu.Unlock()
	w, err := f.Store.Watch(ctx, since, names...)
	if err != nil {
		return nil, err
	}
	fw := &flakyWatch{ch: make(chan store.Event)}
	go func() {
		defer close(fw.ch)
		for {
			select {
			case <-cut:
				fw.err.Store(store.ErrWatchTooSlow)
				return
			case ev, ok := <-w.Events():
				if !ok {
					if err := w.Err(); err != nil {
						fw.err.Store(err)
					}
					return
				}
				select {
				case fw.ch <- ev:
				case <-cut:
					fw.err.Store(store.ErrWatchTooSlow)
					return
				}
			}
		}
	}()
	return fw, nil
}

// cut ends every watch stream with ErrWatchTooSlow.
func (f *flakyStore) cut(compactNext bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.compacted = compactNext
	for _, c := range f.cuts {
		select {
		case <-c:
		default:
			close(c)
		}
	}
}

func (f *flakyStore) watchCalls() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.watches...)
}

type flakyWatch struct {
	ch  chan store.Event
	err atomicErr
}

func (w *flakyWatch) Events() <-chan store.Event { return w.ch }
func (w *flakyWatch) Err() error                 { return w.err.Load() }

type atomicErr struct {
	mu  sync.Mutex
	err error
}

func (a *atomicErr) Store(err error) { a.mu.Lock(); a.err = err; a.mu.Unlock() }
func (a *atomicErr) Load() error     { a.mu.Lock(); defer a.mu.Unlock(); return a.err }

// TestWatchLoopRecovers: the snapshot follows changes made behind the
// server's back (straight to the store) after its watch was cut (resume
// from the last revision) or its revision compacted (full reload).
func TestWatchLoopRecovers(t *testing.T) {
	for _, compact := range []bool{false, true} {
		t.Run(fmt.Sprintf("compacted=%v", compact), func(t *testing.T) {
			var fs *flakyStore
			fastRetry := func(o *options) error { o.retryMin = time.Millisecond; return nil }
			e := newEnv(t, envConfig{opts: []Option{WithTokens(testTokens...), fastRetry}, wrap: func(s store.Store) store.Store {
				fs = &flakyStore{Store: s}
				return fs
			}})
			ctx := store.WithActor(context.Background(), "test")
			if _, err := e.store.Create(ctx, &corsdv1.Policy{Name: "policies/a", Hosts: []string{"a.example.com"}}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return e.srv.live.cur.Load().byName["policies/a"] != nil })
			fs.cut(compact)
			if _, err := e.store.Create(ctx, &corsdv1.Policy{Name: "policies/b"}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.store.Delete(ctx, "policies/a", store.Precondition{}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool {
				s := e.srv.live.cur.Load()
				return s.byName["policies/b"] != nil && s.byName["policies/a"] == nil && s.lookup("", "a.example.com") == nil
			})
			calls := fs.watchCalls()
			if len(calls) < 2 || calls[0] != 0 || calls[1] == 0 {
				t.Errorf("Watch calls %v: want a load from 0, then a resume from the last revision", calls)
			}
			if compact && calls[len(calls)-1] != 0 {
				t.Errorf("Watch calls %v: want a reload from 0 after ErrCompacted", calls)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewOptions(t *testing.T) {
	e := newTokenEnv(t)
	tests := []struct {
		name string
		opts []Option
	}{
		{name: "bad default policy", opts: []Option{WithDefaultPolicy("Not Valid")}},
		{name: "bad token", opts: []Option{WithTokens(Token{Name: "x", Token: "short", Scopes: []Scope{ScopeRead}})}},
		{name: "nil logger", opts: []Option{WithLogger(nil)}},
		{name: "zero progress interval", opts: []Option{WithProgressInterval(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := New(e.store, tt.opts...); err == nil {
				_ = s.Close()
				t.Errorf("New succeeded")
			}
		})
	}
	if _, err := New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
}

func FuzzDecodeChangesToken(f *testing.F) {
	f.Add(encodeChangesToken(42, ""), "")
	f.Add(encodeChangesToken(7, "policies/a"), "policies/a")
	f.Add("garbage", "")
	f.Fuzz(func(t *testing.T, tok, filter string) {
		rev, err := decodeChangesToken(tok, filter)
		if err != nil {
			return
		}
		if rev < 0 {
			t.Fatalf("decodeChangesToken(%q) = %d", tok, rev)
		}
		// Round trip.
		if got, err := decodeChangesToken(encodeChangesToken(rev, filter), filter); err != nil || got != rev {
			t.Fatalf("round trip of %d = %d, %v", rev, got, err)
		}
	})
}

// TestShutdownEndsHealthWatches: open health watches learn NOT_SERVING and
// then end, so GracefulStop does not wait for the shutdown timeout.
func TestShutdownEndsHealthWatches(t *testing.T) {
	e := newTokenEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(e.conn)
	watch := func(service string, want healthpb.HealthCheckResponse_ServingStatus) healthpb.Health_WatchClient {
		w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("Watch(%q): %v", service, err)
		}
		if resp, err := w.Recv(); err != nil || resp.GetStatus() != want {
			t.Fatalf("Watch(%q) first = %v, %v; want %v", service, resp.GetStatus(), err, want)
		}
		return w
	}
	known := watch("corsd.v1.DecisionService", healthpb.HealthCheckResponse_SERVING)
	overall := watch("", healthpb.HealthCheckResponse_SERVING)
	unknown := watch("no.such.Service", healthpb.HealthCheckResponse_SERVICE_UNKNOWN)

	e.srv.Shutdown()
	stopped := make(chan struct{})
	go func() {
		e.gs.GracefulStop()
		close(stopped)
	}()
	for name, w := range map[string]healthpb.Health_WatchClient{"known": known, "overall": overall} {
		if resp, err := w.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("%s watch after Shutdown = %v, %v; want NOT_SERVING", name, resp.GetStatus(), err)
		}
	}
	for name, w := range map[string]healthpb.Health_WatchClient{"known": known, "overall": overall, "unknown": unknown} {
		if _, err := w.Recv(); status.Code(err) != codes.Unavailable {
			t.Errorf("%s watch end = %v, want Unavailable", name, err)
		}
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("GracefulStop still waits for the health watches")
	}
}
