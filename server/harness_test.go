package server

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store"
	"github.com/corsd/corsd/store/boltstore"
)

// Test tokens: admin may read and write, reader only read, checker only
// check.
var (
	adminToken   = Token{Name: "admin", Token: "admin-token-0123456789", Scopes: []Scope{ScopeRead, ScopeWrite}}
	readerToken  = Token{Name: "reader", Token: "reader-token-0123456789", Scopes: []Scope{ScopeRead}}
	checkerToken = Token{Name: "checker", Token: "checker-token-0123456789", Scopes: []Scope{ScopeCheck}}
	testTokens   = []Token{adminToken, readerToken, checkerToken}
)

// env is one server under test: a real boltstore in a temp dir, the
// production interceptors, served over bufconn (or loopback TCP).
type env struct {
	t      testing.TB
	srv    *Server
	gs     *grpc.Server
	store  store.Store
	conn   *grpc.ClientConn
	policy corsdv1.PolicyServiceClient
	dec    corsdv1.DecisionServiceClient
}

type envConfig struct {
	opts      []Option
	storeOpts []boltstore.Option
	// store, when set, is served instead of a new boltstore (the caller
	// closes it).
	store store.Store
	// wrap wraps the store given to the server.
	wrap func(store.Store) store.Store
	// tcp serves on 127.0.0.1:0 instead of bufconn.
	tcp bool
	// noWait skips waiting for the initial load.
	noWait bool
}

func newEnv(t testing.TB, cfg envConfig) *env {
	t.Helper()
	bs := cfg.store
	if bs == nil {
		b, err := boltstore.Open(filepath.Join(t.TempDir(), "corsd.db"), cfg.storeOpts...)
		if err != nil {
			t.Fatalf("boltstore.Open: %v", err)
		}
		t.Cleanup(func() {
			if err := b.Close(); err != nil {
				t.Errorf("store Close: %v", err)
			}
		})
		bs = b
	}
	st := bs
	if cfg.wrap != nil {
		st = cfg.wrap(bs)
	}
	srv, err := New(st, append([]Option{WithLogger(discardLogger())}, cfg.opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	gs := grpc.NewServer(srv.ServerOptions()...)
	srv.Register(gs)

	var (
		lis    net.Listener
		dialTo = "passthrough:///bufnet"
		dopts  = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	)
	if cfg.tcp {
		if lis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatalf("listen: %v", err)
		}
		dialTo = lis.Addr().String()
	} else {
		bl := bufconn.Listen(1 << 20)
		lis = bl
		dopts = append(dopts, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return bl.DialContext(ctx) }))
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(dialTo, dopts...)
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	e := &env{t: t, srv: srv, gs: gs, store: bs, conn: conn, policy: corsdv1.NewPolicyServiceClient(conn), dec: corsdv1.NewDecisionServiceClient(conn)}
	if !cfg.noWait {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.WaitReady(ctx); err != nil {
			t.Fatalf("WaitReady: %v", err)
		}
	}
	return e
}

// newTokenEnv is newEnv with the test tokens.
func newTokenEnv(t *testing.T, opts ...Option) *env {
	return newEnv(t, envConfig{opts: append([]Option{WithTokens(testTokens...)}, opts...)})
}

// as returns a context carrying tok as bearer token.
func as(tok Token) context.Context {
	return withBearer(context.Background(), tok.Token)
}

func withBearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// admin returns a context with the admin token and a deadline.
func (e *env) admin() context.Context {
	ctx, cancel := context.WithTimeout(as(adminToken), 10*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// create creates a policy or fails the test.
func (e *env) create(id string, p *corsdv1.Policy) *corsdv1.Policy {
	e.t.Helper()
	resp, err := e.policy.CreatePolicy(e.admin(), &corsdv1.CreatePolicyRequest{PolicyId: id, Policy: p})
	if err != nil {
		e.t.Fatalf("CreatePolicy(%s): %v", id, err)
	}
	return resp.GetPolicy()
}

// check calls CheckOrigin or fails the test.
func (e *env) check(req *corsdv1.CheckOriginRequest) *corsdv1.Decision {
	e.t.Helper()
	resp, err := e.dec.CheckOrigin(e.admin(), req)
	if err != nil {
		e.t.Fatalf("CheckOrigin(%v): %v", req, err)
	}
	return resp.GetDecision()
}

// wantCode fails the test unless err is a status with code want.
func wantCode(t *testing.T, err error, want codes.Code) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != want {
		t.Fatalf("got error %v (code %v), want code %v", err, status.Code(err), want)
	}
	return st
}

// violations returns the BadRequest field violations of st as field ->
// description.
func violations(t *testing.T, st *status.Status) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if _, dup := out[v.GetField()]; dup {
					t.Errorf("field %s reported twice", v.GetField())
				}
				out[v.GetField()] = v.GetDescription()
			}
		}
	}
	return out
}

// wantViolations checks that err is InvalidArgument naming exactly fields.
func wantViolations(t *testing.T, err error, fields ...string) {
	t.Helper()
	st := wantCode(t, err, codes.InvalidArgument)
	got := violations(t, st)
	gotFields := make(map[string]bool, len(got))
	for f, desc := range got {
		gotFields[f] = true
		if desc == "" {
			t.Errorf("violation %s has no description", f)
		}
	}
	want := make(map[string]bool, len(fields))
	for _, f := range fields {
		want[f] = true
	}
	if diff := cmp.Diff(want, gotFields); diff != "" {
		t.Errorf("field violations mismatch (-want +got):\n%s\nstatus: %v", diff, st.Message())
	}
}

// gatedStore holds Watch calls until open is closed.
type gatedStore struct {
	store.Store
	open chan struct{}
}

func (g *gatedStore) Watch(ctx context.Context, since int64, names ...string) (store.Watch, error) {
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Store.Watch(ctx, since, names...)
}

var errInjected = errors.New("injected fault")

func cloneProto(p *corsdv1.Policy) *corsdv1.Policy { return proto.Clone(p).(*corsdv1.Policy) }

// laggingStore delivers each watch event (after the initial state) lag
// late, as a store far away or under load would.
type laggingStore struct {
	store.Store
	lag time.Duration
}

func (l *laggingStore) Watch(ctx context.Context, since int64, names ...string) (store.Watch, error) {
	w, err := l.Store.Watch(ctx, since, names...)
	if err != nil {
		return nil, err
	}
	lw := &flakyWatch{ch: make(chan store.Event)}
	go func() {
		defer close(lw.ch)
		synced := since > 0
		for ev := range w.Events() {
			if synced {
				select {
				case <-time.After(l.lag):
				case <-ctx.Done():
					return
				}
			}
			synced = synced || ev.Type == store.EventSynced
			select {
			case lw.ch <- ev:
			case <-ctx.Done():
				return
			}
		}
		lw.err.Store(w.Err())
	}()
	return lw, nil
}
