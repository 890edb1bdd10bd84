package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/corsd/corsd/internal/corsdtest"
	"github.com/corsd/corsd/policy"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
	"github.com/corsd/corsd/store/boltstore"
)

func TestCheckOrigin(t *testing.T) {
	e := newTokenEnv(t)
	rev := e.create("acme", acme()).GetRevision()
	tests := []struct {
		name string
		req  *corsdv1.CheckOriginRequest
		want *corsdv1.Decision
	}{
		{
			name: "allowed actual request with credentials",
			req:  &corsdv1.CheckOriginRequest{Policy: "policies/acme", Method: "GET", Origin: "https://app.example.com"},
			want: &corsdv1.Decision{
				Kind: corsdv1.DecisionKind_DECISION_KIND_ACTUAL, Allowed: true, Reason: corsdv1.Reason_REASON_ALLOWED,
				Policy: "policies/acme", PolicyRevision: rev, Mode: corsdv1.Mode_MODE_ENFORCE,
				ResponseHeaders: []*corsdv1.Header{
					{Name: "Access-Control-Allow-Origin", Value: "https://app.example.com"},
					{Name: "Access-Control-Allow-Credentials", Value: "true"},
					{Name: "Vary", Value: "Origin", Append: true},
				},
			},
		},
		{
			name: "preflight selected by host",
			req:  &corsdv1.CheckOriginRequest{Host: "api.example.com:443", Method: "OPTIONS", Origin: "https://app.example.com", AccessControlRequestMethod: "PUT"},
			want: &corsdv1.Decision{
				Kind: corsdv1.DecisionKind_DECISION_KIND_PREFLIGHT, Allowed: true, Reason: corsdv1.Reason_REASON_ALLOWED, ReplyStatus: 204,
				Policy: "policies/acme", PolicyRevision: rev, Mode: corsdv1.Mode_MODE_ENFORCE,
			},
		},
		{
			name: "refused origin",
			req:  &corsdv1.CheckOriginRequest{Policy: "policies/acme", Method: "GET", Origin: "https://evil.example"},
			want: &corsdv1.Decision{
				Kind: corsdv1.DecisionKind_DECISION_KIND_ACTUAL, Reason: corsdv1.Reason_REASON_ORIGIN_NOT_ALLOWED,
				Policy: "policies/acme", PolicyRevision: rev, Mode: corsdv1.Mode_MODE_ENFORCE,
				ResponseHeaders: []*corsdv1.Header{{Name: "Vary", Value: "Origin", Append: true}},
			},
		},
		{
			name: "refused preflight method",
			req:  &corsdv1.CheckOriginRequest{Policy: "policies/acme", Method: "OPTIONS", Origin: "https://app.example.com", AccessControlRequestMethod: "DELETE"},
			want: &corsdv1.Decision{
				Kind: corsdv1.DecisionKind_DECISION_KIND_PREFLIGHT, Reason: corsdv1.Reason_REASON_METHOD_NOT_ALLOWED, ReplyStatus: 403,
				Policy: "policies/acme", PolicyRevision: rev, Mode: corsdv1.Mode_MODE_ENFORCE,
			},
		},
		{
			name: "unknown host: no policy",
			req:  &corsdv1.CheckOriginRequest{Host: "other.example.com", Method: "GET", Origin: "https://app.example.com"},
			want: &corsdv1.Decision{Kind: corsdv1.DecisionKind_DECISION_KIND_ACTUAL, Reason: corsdv1.Reason_REASON_NO_POLICY},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.check(tt.req)
			if got.GetMessage() == "" {
				t.Errorf("decision has no message")
			}
			// Preflight header sets are the engine's business; compare them
			// only where the test lists them.
			opts := []cmp.Option{protocmp.Transform(), protocmp.IgnoreFields(&corsdv1.Decision{}, "message")}
			if tt.want.GetKind() == corsdv1.DecisionKind_DECISION_KIND_PREFLIGHT {
				opts = append(opts, protocmp.IgnoreFields(&corsdv1.Decision{}, "response_headers"))
			}
			if diff := cmp.Diff(tt.want, got, opts...); diff != "" {
				t.Errorf("CheckOrigin(%v) mismatch (-want +got):\n%s", tt.req, diff)
			}
		})
	}
}

func TestCheckOriginInvalid(t *testing.T) {
	e := newTokenEnv(t)
	long := strings.Repeat("a", maxFieldLen+1)
	tests := []struct {
		name   string
		req    *corsdv1.CheckOriginRequest
		fields []string
	}{
		{name: "bad policy name", req: &corsdv1.CheckOriginRequest{Policy: "acme"}, fields: []string{"policy"}},
		{name: "long origin", req: &corsdv1.CheckOriginRequest{Origin: "https://" + long}, fields: []string{"origin"}},
		{name: "long headers and host", req: &corsdv1.CheckOriginRequest{Host: long, AccessControlRequestHeaders: long}, fields: []string{"host", "access_control_request_headers"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.dec.CheckOrigin(context.Background(), tt.req)
			wantViolations(t, err, tt.fields...)
		})
	}
}

// TestCheckOriginUnknownPolicy: an explicit policy name that no policy has
// is an error, never a quiet "no policy".
func TestCheckOriginUnknownPolicy(t *testing.T) {
	e := newTokenEnv(t)
	_, err := e.dec.CheckOrigin(e.admin(), &corsdv1.CheckOriginRequest{Policy: "policies/nope", Host: "api.example.com", Method: "GET", Origin: "https://app.example.com"})
	if st := wantCode(t, err, codes.NotFound); !strings.Contains(st.Message(), "policies/nope") {
		t.Errorf("NotFound message %q does not name the policy", st.Message())
	}
}

// TestWriteVisibleToNextCheck: once an admin call returned, the very next
// decision sees the write, for every kind of write.
func TestWriteVisibleToNextCheck(t *testing.T) {
	// The server's own watch lags far behind: only the admin path can make
	// the writes visible in time.
	e := newEnv(t, envConfig{opts: []Option{WithTokens(testTokens...)}, wrap: func(s store.Store) store.Store {
		return &laggingStore{Store: s, lag: 200 * time.Millisecond}
	}})
	ctx := e.admin()
	req := &corsdv1.CheckOriginRequest{Host: "api.example.com", Method: "GET", Origin: "https://new.example.com"}
	reason := func() corsdv1.Reason { return e.check(req).GetReason() }
	for i := range 10 {
		id := fmt.Sprintf("p%d", i)
		name := "policies/" + id
		if _, err := e.policy.CreatePolicy(ctx, &corsdv1.CreatePolicyRequest{PolicyId: id, Policy: &corsdv1.Policy{Hosts: []string{"api.example.com"}}}); err != nil {
			t.Fatal(err)
		}
		if got := reason(); got != corsdv1.Reason_REASON_ORIGIN_NOT_ALLOWED {
			t.Fatalf("round %d after create: reason %v, want ORIGIN_NOT_ALLOWED", i, got)
		}
		if _, err := e.policy.AddOrigin(ctx, &corsdv1.AddOriginRequest{Policy: name, Origin: &corsdv1.OriginRule{Pattern: "https://new.example.com"}}); err != nil {
			t.Fatal(err)
		}
		if got := reason(); got != corsdv1.Reason_REASON_ALLOWED {
			t.Fatalf("round %d after AddOrigin: reason %v, want ALLOWED", i, got)
		}
		if _, err := e.policy.RemoveOrigin(ctx, &corsdv1.RemoveOriginRequest{Policy: name, Pattern: "https://new.example.com"}); err != nil {
			t.Fatal(err)
		}
		if got := reason(); got != corsdv1.Reason_REASON_ORIGIN_NOT_ALLOWED {
			t.Fatalf("round %d after RemoveOrigin: reason %v, want ORIGIN_NOT_ALLOWED", i, got)
		}
		if _, err := e.policy.DeletePolicy(ctx, &corsdv1.DeletePolicyRequest{Name: name}); err != nil {
			t.Fatal(err)
		}
		if got := reason(); got != corsdv1.Reason_REASON_NO_POLICY {
			t.Fatalf("round %d after delete: reason %v, want NO_POLICY", i, got)
		}
	}
}

func TestDefaultPolicy(t *testing.T) {
	e := newTokenEnv(t, WithDefaultPolicy("fallback"))
	req := &corsdv1.CheckOriginRequest{Host: "anything.example", Method: "GET", Origin: "https://app.example.com"}
	if got := e.check(req).GetReason(); got != corsdv1.Reason_REASON_NO_POLICY {
		t.Errorf("before the default exists: %v, want NO_POLICY", got)
	}
	e.create("fallback", &corsdv1.Policy{Origins: []*corsdv1.OriginRule{{Pattern: "https://app.example.com"}}})
	if got := e.check(req); got.GetReason() != corsdv1.Reason_REASON_ALLOWED || got.GetPolicy() != "policies/fallback" {
		t.Errorf("with the default: %v %s, want ALLOWED by policies/fallback", got.GetReason(), got.GetPolicy())
	}
}

func TestCheckOriginNotReady(t *testing.T) {
	gate := make(chan struct{})
	e := newEnv(t, envConfig{noWait: true, wrap: func(s store.Store) store.Store { return &gatedStore{Store: s, open: gate} }})
	_, err := e.dec.CheckOrigin(context.Background(), &corsdv1.CheckOriginRequest{Method: "GET"})
	wantCode(t, err, codes.Unavailable)
	if _, err := e.srv.Decide(context.Background(), "", policy.Request{}); err == nil {
		t.Error("Decide before the initial load succeeded")
	}
	close(gate)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.dec.CheckOrigin(context.Background(), &corsdv1.CheckOriginRequest{Method: "GET"}); err != nil {
		t.Errorf("CheckOrigin after the load: %v", err)
	}
}

type watchEv struct {
	Type corsdv1.WatchEventType
	Name string
}

// recvN reads n events of a watch stream, skipping PROGRESS unless keep.
func recvN(t *testing.T, s grpc.ServerStreamingClient[corsdv1.WatchPoliciesResponse], n int) ([]watchEv, int64) {
	t.Helper()
	var out []watchEv
	var last int64
	for len(out) < n {
		msg, err := s.Recv()
		if err != nil {
			t.Fatalf("Recv after %v: %v", out, err)
		}
		if msg.GetType() == corsdv1.WatchEventType_WATCH_EVENT_TYPE_PROGRESS {
			continue
		}
		if msg.GetType() == corsdv1.WatchEventType_WATCH_EVENT_TYPE_PUT || msg.GetType() == corsdv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT {
			if msg.GetPolicy().GetName() != msg.GetName() {
				t.Errorf("%v event for %s carries policy %q", msg.GetType(), msg.GetName(), msg.GetPolicy().GetName())
			}
		}
		out = append(out, watchEv{msg.GetType(), msg.GetName()})
		last = msg.GetRevision()
	}
	return out, last
}

const (
	evSnapshot = corsdv1.WatchEventType_WATCH_EVENT_TYPE_SNAPSHOT
	evSynced   = corsdv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED
	evPut      = corsdv1.WatchEventType_WATCH_EVENT_TYPE_PUT
	evDelete   = corsdv1.WatchEventType_WATCH_EVENT_TYPE_DELETE
)

func TestWatchPolicies(t *testing.T) {
	e := newTokenEnv(t)
	e.create("a", &corsdv1.Policy{})
	e.create("b", &corsdv1.Policy{})
	ctx, cancel := context.WithTimeout(as(checkerToken), 20*time.Second)
	defer cancel()

	all, err := e.dec.WatchPolicies(ctx, &corsdv1.WatchPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	onlyB, err := e.dec.WatchPolicies(ctx, &corsdv1.WatchPoliciesRequest{Names: []string{"policies/b"}})
	if err != nil {
		t.Fatal(err)
	}
	got, syncedRev := recvN(t, all, 3)
	if diff := cmp.Diff([]watchEv{{evSnapshot, "policies/a"}, {evSnapshot, "policies/b"}, {evSynced, ""}}, got); diff != "" {
		t.Errorf("initial state mismatch (-want +got):\n%s", diff)
	}
	got, _ = recvN(t, onlyB, 2)
	if diff := cmp.Diff([]watchEv{{evSnapshot, "policies/b"}, {evSynced, ""}}, got); diff != "" {
		t.Errorf("filtered initial state mismatch (-want +got):\n%s", diff)
	}

	e.create("c", &corsdv1.Policy{})
	if _, err := e.policy.AddOrigin(e.admin(), &corsdv1.AddOriginRequest{Policy: "policies/b", Origin: &corsdv1.OriginRule{Pattern: "https://x.example.com"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.policy.DeletePolicy(e.admin(), &corsdv1.DeletePolicyRequest{Name: "policies/a"}); err != nil {
		t.Fatal(err)
	}
	changes := []watchEv{{evPut, "policies/c"}, {evPut, "policies/b"}, {evDelete, "policies/a"}}
	got, _ = recvN(t, all, 3)
	if diff := cmp.Diff(changes, got); diff != "" {
		t.Errorf("changes mismatch (-want +got):\n%s", diff)
	}
	got, _ = recvN(t, onlyB, 1)
	if diff := cmp.Diff([]watchEv{{evPut, "policies/b"}}, got); diff != "" {
		t.Errorf("filtered changes mismatch (-want +got):\n%s", diff)
	}

	// Resuming after the synced revision replays exactly the changes.
	resumed, err := e.dec.WatchPolicies(ctx, &corsdv1.WatchPoliciesRequest{StartRevision: syncedRev})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = recvN(t, resumed, 3)
	if diff := cmp.Diff(changes, got); diff != "" {
		t.Errorf("resumed changes mismatch (-want +got):\n%s", diff)
	}

	// A delete of a watched name reaches the filtered stream.
	if _, err := e.policy.DeletePolicy(e.admin(), &corsdv1.DeletePolicyRequest{Name: "policies/b"}); err != nil {
		t.Fatal(err)
	}
	got, _ = recvN(t, onlyB, 1)
	if diff := cmp.Diff([]watchEv{{evDelete, "policies/b"}}, got); diff != "" {
		t.Errorf("filtered delete mismatch (-want +got):\n%s", diff)
	}
}

func TestWatchPoliciesCutOff(t *testing.T) {
	var fs *flakyStore
	e := newEnv(t, envConfig{opts: []Option{WithTokens(testTokens...)}, wrap: func(s store.Store) store.Store {
		fs = &flakyStore{Store: s}
		return fs
	}})
	e.create("a", &corsdv1.Policy{})
	ctx, cancel := context.WithTimeout(as(checkerToken), 10*time.Second)
	defer cancel()
	s, err := e.dec.WatchPolicies(ctx, &corsdv1.WatchPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, synced := recvN(t, s, 2)
	fs.cut(false)
	_, err = s.Recv()
	st := wantCode(t, err, codes.ResourceExhausted)
	if want := fmt.Sprintf("resume from revision %d", synced); !strings.Contains(st.Message(), want) {
		t.Errorf("message %q does not contain %q", st.Message(), want)
	}
}

func TestDecisionLog(t *testing.T) {
	tests := []struct {
		name     string
		opts     []Option
		mode     corsdv1.Mode
		origin   string
		wantLogs int
	}{
		{name: "enforce refusal not logged by default", mode: corsdv1.Mode_MODE_ENFORCE, origin: "https://evil.example", wantLogs: 0},
		{name: "report-only refusal always logged", mode: corsdv1.Mode_MODE_REPORT_ONLY, origin: "https://evil.example", wantLogs: 1},
		{name: "report-only allowed not logged", mode: corsdv1.Mode_MODE_REPORT_ONLY, origin: "https://app.example.com", wantLogs: 0},
		{name: "every decision with WithDecisionLog", opts: []Option{WithDecisionLog()}, mode: corsdv1.Mode_MODE_ENFORCE, origin: "https://app.example.com", wantLogs: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf corsdtest.Logs
			opts := append([]Option{WithTokens(testTokens...), WithLogger(slog.New(slog.NewJSONHandler(&buf, nil)))}, tt.opts...)
			e := newEnv(t, envConfig{opts: opts})
			p := acme()
			p.Mode = tt.mode
			e.create("acme", p)
			e.check(&corsdv1.CheckOriginRequest{Policy: "policies/acme", Method: "GET", Origin: tt.origin})
			if got := strings.Count(buf.String(), `"msg":"decision"`); got != tt.wantLogs {
				t.Errorf("%d decision log lines, want %d:\n%s", got, tt.wantLogs, buf.String())
			}
			if tt.wantLogs > 0 && !strings.Contains(buf.String(), tt.origin) {
				t.Errorf("decision log does not name the origin:\n%s", buf.String())
			}
		})
	}
}

func TestWatchPoliciesErrors(t *testing.T) {
	e := newEnv(t, envConfig{storeOpts: []boltstore.Option{boltstore.WithRetention(2, 0)}, opts: []Option{WithTokens(testTokens...)}})
	for i := range 5 {
		e.create(fmt.Sprintf("p%d", i), &corsdv1.Policy{})
	}
	tests := []struct {
		name   string
		req    *corsdv1.WatchPoliciesRequest
		code   codes.Code
		fields []string
		msg    string
	}{
		{name: "compacted", req: &corsdv1.WatchPoliciesRequest{StartRevision: 1}, code: codes.OutOfRange, msg: "start_revision 0"},
		{name: "future", req: &corsdv1.WatchPoliciesRequest{StartRevision: 1000}, code: codes.OutOfRange, msg: "start_revision 0"},
		{name: "negative", req: &corsdv1.WatchPoliciesRequest{StartRevision: -1}, code: codes.InvalidArgument, fields: []string{"start_revision"}},
		{name: "bad name", req: &corsdv1.WatchPoliciesRequest{Names: []string{"policies/ok", "Bad"}}, code: codes.InvalidArgument, fields: []string{"names[1]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(as(checkerToken), 10*time.Second)
			defer cancel()
			s, err := e.dec.WatchPolicies(ctx, tt.req)
			if err == nil {
				_, err = s.Recv()
			}
			if tt.fields != nil {
				wantViolations(t, err, tt.fields...)
				return
			}
			st := wantCode(t, err, tt.code)
			if !strings.Contains(st.Message(), tt.msg) {
				t.Errorf("message %q does not contain %q", st.Message(), tt.msg)
			}
		})
	}
}

func TestWatchPoliciesProgressAndShutdown(t *testing.T) {
	e := newTokenEnv(t, WithProgressInterval(50*time.Millisecond))
	e.create("a", &corsdv1.Policy{})
	ctx, cancel := context.WithTimeout(as(checkerToken), 10*time.Second)
	defer cancel()
	s, err := e.dec.WatchPolicies(ctx, &corsdv1.WatchPoliciesRequest{Names: []string{"policies/zzz"}})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.Recv()
	if err != nil || msg.GetType() != evSynced {
		t.Fatalf("first event %v, %v; want SYNCED", msg, err)
	}
	// A change to another policy is filtered out, but progress reports it.
	b := e.create("b", &corsdv1.Policy{})
	deadline := time.Now().Add(5 * time.Second)
	for {
		msg, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if msg.GetType() != corsdv1.WatchEventType_WATCH_EVENT_TYPE_PROGRESS {
			t.Fatalf("got %v, want only PROGRESS", msg)
		}
		if msg.GetRevision() == b.GetRevision() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("progress stuck at %d, want %d", msg.GetRevision(), b.GetRevision())
		}
	}
	e.srv.Shutdown()
	for {
		_, err := s.Recv()
		if err == nil {
			continue
		}
		st := wantCode(t, err, codes.Unavailable)
		if !strings.Contains(st.Message(), fmt.Sprintf("resume from revision %d", b.GetRevision())) {
			t.Errorf("shutdown message %q does not say where to resume", st.Message())
		}
		break
	}
	if _, err := s.Recv(); errors.Is(err, io.EOF) || err == nil {
		t.Errorf("stream still open after shutdown")
	}
}
