package server

import (
	"context"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

func TestAuth(t *testing.T) {
	open := newTokenEnv(t)
	closed := newTokenEnv(t, WithDecisionAuth())
	open.create("acme", acme())
	closed.create("acme", acme())
	get := func(e *env, ctx context.Context) error {
		_, err := e.policy.GetPolicy(ctx, &corsdv1.GetPolicyRequest{Name: "policies/acme"})
		return err
	}
	create := func(e *env, ctx context.Context) error {
		_, err := e.policy.CreatePolicy(ctx, &corsdv1.CreatePolicyRequest{PolicyId: "x", Policy: &corsdv1.Policy{}, ValidateOnly: true})
		return err
	}
	check := func(e *env, ctx context.Context) error {
		_, err := e.dec.CheckOrigin(ctx, &corsdv1.CheckOriginRequest{Method: "GET"})
		return err
	}
	extAuthz := func(e *env, ctx context.Context) error {
		_, err := authv3.NewAuthorizationClient(e.conn).Check(ctx, &authv3.CheckRequest{})
		return err
	}
	watch := func(e *env, ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		s, err := e.dec.WatchPolicies(ctx, &corsdv1.WatchPoliciesRequest{})
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	report := func(e *env, ctx context.Context) error {
		_, err := e.dec.ReportDecisions(ctx, &corsdv1.ReportDecisionsRequest{Reporter: "svc", Reports: []*corsdv1.DecisionReport{refusedReport(1)}})
		return err
	}
	health := func(e *env, ctx context.Context) error {
		_, err := healthpb.NewHealthClient(e.conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	reflect := func(e *env, ctx context.Context) error {
		s, err := reflectionpb.NewServerReflectionClient(e.conn).ServerReflectionInfo(ctx)
		if err != nil {
			return err
		}
		if err := s.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	md := func(kv ...string) context.Context {
		return metadata.NewOutgoingContext(context.Background(), metadata.Pairs(kv...))
	}
	tests := []struct {
		name    string
		env     *env
		call    func(*env, context.Context) error
		ctx     context.Context
		want    codes.Code
		wantMsg string
	}{
		{name: "read with read scope", env: open, call: get, ctx: as(readerToken), want: codes.OK},
		{name: "read with admin", env: open, call: get, ctx: as(adminToken), want: codes.OK},
		{name: "read without token", env: open, call: get, ctx: context.Background(), want: codes.Unauthenticated, wantMsg: "missing bearer token"},
		{name: "read with unknown token", env: open, call: get, ctx: withBearer(context.Background(), "not-a-configured-token"), want: codes.Unauthenticated},
		{name: "token prefix is not the token", env: open, call: get, ctx: withBearer(context.Background(), adminToken.Token[:len(adminToken.Token)-1]), want: codes.Unauthenticated},
		{name: "basic scheme", env: open, call: get, ctx: md("authorization", "Basic "+adminToken.Token), want: codes.Unauthenticated, wantMsg: "malformed"},
		{name: "lower-case scheme", env: open, call: get, ctx: md("authorization", "bearer "+adminToken.Token), want: codes.OK},
		{name: "two headers", env: open, call: get, ctx: md("authorization", "Bearer "+adminToken.Token, "authorization", "Bearer "+readerToken.Token), want: codes.Unauthenticated},
		{name: "read with check scope only", env: open, call: get, ctx: as(checkerToken), want: codes.PermissionDenied, wantMsg: `"read" scope`},
		{name: "write with read scope", env: open, call: create, ctx: as(readerToken), want: codes.PermissionDenied, wantMsg: `"write" scope`},
		{name: "write with admin", env: open, call: create, ctx: as(adminToken), want: codes.OK},
		{name: "open decisions without token", env: open, call: check, ctx: context.Background(), want: codes.OK},
		{name: "decision auth without token", env: closed, call: check, ctx: context.Background(), want: codes.Unauthenticated},
		{name: "decision auth with admin", env: closed, call: check, ctx: as(adminToken), want: codes.PermissionDenied, wantMsg: `"check" scope`},
		{name: "decision auth with checker", env: closed, call: check, ctx: as(checkerToken), want: codes.OK},
		{name: "open ext_authz without token", env: open, call: extAuthz, ctx: context.Background(), want: codes.OK},
		{name: "decision auth: ext_authz without token", env: closed, call: extAuthz, ctx: context.Background(), want: codes.Unauthenticated},
		{name: "decision auth: ext_authz with reader", env: closed, call: extAuthz, ctx: as(readerToken), want: codes.PermissionDenied, wantMsg: `"check" scope`},
		{name: "decision auth: ext_authz with checker", env: closed, call: extAuthz, ctx: as(checkerToken), want: codes.OK},
		// Tokens configured: a watch and a report need the check scope even
		// with decision auth off (they were open side doors).
		{name: "open decisions: watch without token", env: open, call: watch, ctx: context.Background(), want: codes.Unauthenticated},
		{name: "open decisions: watch with reader", env: open, call: watch, ctx: as(readerToken), want: codes.PermissionDenied, wantMsg: `"check" scope`},
		{name: "open decisions: watch with checker", env: open, call: watch, ctx: as(checkerToken), want: codes.OK},
		{name: "open decisions: report without token", env: open, call: report, ctx: context.Background(), want: codes.Unauthenticated},
		{name: "open decisions: report with admin", env: open, call: report, ctx: as(adminToken), want: codes.PermissionDenied, wantMsg: `"check" scope`},
		{name: "open decisions: report with checker", env: open, call: report, ctx: as(checkerToken), want: codes.OK},
		{name: "decision auth: report without token", env: closed, call: report, ctx: context.Background(), want: codes.Unauthenticated},
		{name: "health is open", env: closed, call: health, ctx: context.Background(), want: codes.OK},
		{name: "reflection is open", env: closed, call: reflect, ctx: context.Background(), want: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(tt.env, tt.ctx)
			if tt.want == codes.OK {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			st := wantCode(t, err, tt.want)
			if !strings.Contains(st.Message(), tt.wantMsg) {
				t.Errorf("message %q does not contain %q", st.Message(), tt.wantMsg)
			}
		})
	}
}

func TestWatchPoliciesNeedsCheckScope(t *testing.T) {
	e := newTokenEnv(t, WithDecisionAuth())
	s, err := e.dec.WatchPolicies(as(readerToken), &corsdv1.WatchPoliciesRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	wantCode(t, err, codes.PermissionDenied)
	s, err = e.dec.WatchPolicies(as(checkerToken), &corsdv1.WatchPoliciesRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	if err != nil {
		t.Errorf("WatchPolicies with the check scope: %v", err)
	}
}

// TestNoTokensLoopbackOnly: without tokens, admin calls are accepted from
// loopback and recorded as "local", and refused from anywhere else (a
// bufconn peer is not loopback).
func TestNoTokensLoopbackOnly(t *testing.T) {
	t.Run("loopback", func(t *testing.T) {
		e := newEnv(t, envConfig{tcp: true})
		ctx := context.Background()
		if _, err := e.policy.CreatePolicy(ctx, &corsdv1.CreatePolicyRequest{PolicyId: "acme", Policy: &corsdv1.Policy{}}); err != nil {
			t.Fatalf("CreatePolicy over loopback without tokens: %v", err)
		}
		resp, err := e.policy.ListChanges(ctx, &corsdv1.ListChangesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.GetChanges()[0].GetActor(); got != LocalActor {
			t.Errorf("actor = %q, want %q", got, LocalActor)
		}
	})
	t.Run("not loopback", func(t *testing.T) {
		e := newEnv(t, envConfig{})
		_, err := e.policy.CreatePolicy(context.Background(), &corsdv1.CreatePolicyRequest{PolicyId: "acme", Policy: &corsdv1.Policy{}})
		st := wantCode(t, err, codes.PermissionDenied)
		if !strings.Contains(st.Message(), "loopback") {
			t.Errorf("message %q does not explain the loopback rule", st.Message())
		}
		// Decisions stay open; so do watches and reports while no token
		// is configured (there is no token to ask for).
		if _, err := e.dec.CheckOrigin(context.Background(), &corsdv1.CheckOriginRequest{Method: "GET"}); err != nil {
			t.Errorf("CheckOrigin: %v", err)
		}
		if _, err := e.dec.ReportDecisions(context.Background(), &corsdv1.ReportDecisionsRequest{Reporter: "svc", Reports: []*corsdv1.DecisionReport{refusedReport(1)}}); err != nil {
			t.Errorf("ReportDecisions: %v", err)
		}
	})
}

func TestParseTokens(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    []Token
		wantErr string
	}{
		{
			name: "yaml",
			yaml: "- name: ci\n  token: 0123456789abcdef\n  scopes: [read, write]\n",
			want: []Token{{Name: "ci", Token: "0123456789abcdef", Scopes: []Scope{ScopeRead, ScopeWrite}}},
		},
		{
			name: "json",
			yaml: `[{"name":"envoy","token":"fedcba9876543210","scopes":["check"]}]`,
			want: []Token{{Name: "envoy", Token: "fedcba9876543210", Scopes: []Scope{ScopeCheck}}},
		},
		{name: "empty", yaml: "", want: nil},
		{name: "short token", yaml: `[{"name":"a","token":"short","scopes":["read"]}]`, wantErr: "shorter than 16"},
		{name: "unknown scope", yaml: `[{"name":"a","token":"0123456789abcdef","scopes":["admin"]}]`, wantErr: `unknown scope "admin"`},
		{name: "no scopes", yaml: `[{"name":"a","token":"0123456789abcdef"}]`, wantErr: "no scopes"},
		{name: "no name", yaml: `[{"token":"0123456789abcdef","scopes":["read"]}]`, wantErr: "name is required"},
		{name: "duplicate name", yaml: `[{"name":"a","token":"0123456789abcdef","scopes":["read"]},{"name":"a","token":"0123456789abcdeg","scopes":["read"]}]`, wantErr: "duplicate name"},
		{name: "duplicate token", yaml: `[{"name":"a","token":"0123456789abcdef","scopes":["read"]},{"name":"b","token":"0123456789abcdef","scopes":["read"]}]`, wantErr: "configured twice"},
		{name: "unknown field", yaml: `[{"name":"a","token":"0123456789abcdef","scopes":["read"],"scope":"x"}]`, wantErr: "unknown field"},
		{name: "space in token", yaml: `[{"name":"a","token":"0123456789 abcdef","scopes":["read"]}]`, wantErr: "visible ASCII"},
		{name: "not a list", yaml: `name: a`, wantErr: "parse tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTokens([]byte(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTokens error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseTokens mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseTokensEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     string
		want    []Token
		wantErr string
	}{
		{
			name: "two tokens",
			env:  "ci:0123456789abcdef:read+write, envoy:fedcba9876543210:check,",
			want: []Token{
				{Name: "ci", Token: "0123456789abcdef", Scopes: []Scope{ScopeRead, ScopeWrite}},
				{Name: "envoy", Token: "fedcba9876543210", Scopes: []Scope{ScopeCheck}},
			},
		},
		{name: "empty", env: "", want: nil},
		{name: "missing scopes", env: "ci:0123456789abcdef", wantErr: "name:token:scope1+scope2"},
		{name: "too many parts", env: "ci:0123:4567:read", wantErr: "name:token:scope1+scope2"},
		{name: "bad scope", env: "ci:0123456789abcdef:read+", wantErr: `unknown scope ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTokensEnv(tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTokensEnv error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseTokensEnv mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseTokensEnv(f *testing.F) {
	f.Add("ci:0123456789abcdef:read+write,envoy:fedcba9876543210:check")
	f.Add("a:b:c")
	f.Add(",,:,")
	f.Fuzz(func(t *testing.T, s string) {
		tokens, err := ParseTokensEnv(s)
		if err != nil {
			return
		}
		// Whatever parses is valid and usable.
		if _, err := newAuthenticator(tokens, true); err != nil {
			t.Fatalf("ParseTokensEnv(%q) accepted tokens newAuthenticator refuses: %v", s, err)
		}
		for _, tok := range tokens {
			if len(tok.Token) < minTokenLen || strings.ContainsAny(tok.Token, ":, ") {
				t.Fatalf("ParseTokensEnv(%q) accepted token %q", s, tok.Token)
			}
		}
	})
}

func TestIsLoopbackAddress(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8443", true},
		{"127.0.0.2:0", true},
		{"[::1]:8443", true},
		{"localhost:8443", true},
		{"LOCALHOST:1", true},
		{":8443", false},
		{"0.0.0.0:8443", false},
		{"[::]:8443", false},
		{"10.0.0.1:8443", false},
		{"example.com:8443", false},
		{"127.0.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if got := IsLoopbackAddress(tt.addr); got != tt.want {
				t.Errorf("IsLoopbackAddress(%q) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

// TestSetTokens: a rotation takes effect on the next call, and an invalid
// set is refused with the current one kept.
func TestSetTokens(t *testing.T) {
	e := newTokenEnv(t)
	get := func(tok string) error {
		_, err := e.policy.ListPolicies(withBearer(context.Background(), tok), &corsdv1.ListPoliciesRequest{})
		return err
	}
	if err := get(readerToken.Token); err != nil {
		t.Fatalf("reader before rotation: %v", err)
	}
	rotated := Token{Name: "reader-2", Token: "rotated-reader-token-0123456789", Scopes: []Scope{ScopeRead}}
	if err := e.srv.SetTokens(adminToken, rotated); err != nil {
		t.Fatalf("SetTokens: %v", err)
	}
	wantCode(t, get(readerToken.Token), codes.Unauthenticated)
	if err := get(rotated.Token); err != nil {
		t.Errorf("rotated token: %v", err)
	}

	// Invalid sets are refused whole; the rotated set still rules.
	for name, bad := range map[string][]Token{
		"short token":   {{Name: "x", Token: "short", Scopes: []Scope{ScopeRead}}},
		"unknown scope": {{Name: "x", Token: "long-enough-token-0123456789", Scopes: []Scope{"admin"}}},
		"duplicate":     {rotated, rotated},
	} {
		if err := e.srv.SetTokens(bad...); err == nil {
			t.Errorf("SetTokens(%s) succeeded", name)
		}
	}
	if err := get(rotated.Token); err != nil {
		t.Errorf("rotated token after refused sets: %v", err)
	}
}
