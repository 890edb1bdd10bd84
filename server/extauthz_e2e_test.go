package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/corsd/corsd/internal/envoyemu"
	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
)

// safeExtAuthz is the Envoy filter configuration the README recommends:
// gRPC transport, a short timeout, and only the CORS and Fetch metadata
// request headers sent to corsd (no cookies or tokens).
func safeExtAuthz(failureModeAllow bool) *extauthzv3.ExtAuthz {
	var pats []*matcherv3.StringMatcher
	for _, h := range []string{"origin", "access-control-request-method", "access-control-request-headers", "access-control-request-private-network", "sec-fetch-site"} {
		pats = append(pats, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h}})
	}
	return &extauthzv3.ExtAuthz{
		Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
			// Generous for the race detector; production uses ~50ms.
			Timeout: durationpb.New(5 * time.Second),
		}},
		TransportApiVersion: corev3.ApiVersion_V3,
		FailureModeAllow:    failureModeAllow,
		AllowedHeaders:      &matcherv3.ListStringMatcher{Patterns: pats},
	}
}

// startAuthzGRPC serves newAuthzServer(d) over bufconn and returns a client.
func startAuthzGRPC(t *testing.T, d decider) authv3.AuthorizationClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, newAuthzServer(d))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

func TestExtAuthzThroughEnvoyEmulator(t *testing.T) {
	const app = "https://app.example.com"
	type want struct {
		status   int
		upstream bool
		header   map[string][]string // exact values; nil slice: absent
		body     string              // checked when non-empty
	}
	tests := []struct {
		name             string
		method, path     string
		host             string
		header           map[string]string
		unavailable      bool
		failureModeAllow bool
		want             want
	}{
		{
			name: "preflight answered without calling the upstream", method: "OPTIONS", path: "/v1/items", host: "api.example.com",
			header: map[string]string{"Origin": app, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "content-type"},
			want: want{status: 204, header: map[string][]string{
				"Access-Control-Allow-Origin": {app}, "Access-Control-Allow-Credentials": {"true"}, "Access-Control-Allow-Methods": {"GET, PUT"},
				"Access-Control-Allow-Headers": {"content-type, authorization"}, "Access-Control-Max-Age": {"600"}, "Vary": {varyPreflightValue},
			}},
		},
		{
			name: "refused preflight answered 403 without CORS headers", method: "OPTIONS", path: "/v1/items", host: "api.example.com",
			header: map[string]string{"Origin": "https://evil.example.net", "Access-Control-Request-Method": "PUT"},
			want:   want{status: 403, header: map[string][]string{"Access-Control-Allow-Origin": nil, "Vary": {varyPreflightValue}}},
		},
		{
			name: "allowed request: one Access-Control-Allow-Origin though the upstream sets its own, Vary merged", method: "GET", path: "/own-cors", host: "api.example.com",
			header: map[string]string{"Origin": app},
			want: want{status: 200, upstream: true, body: "upstream", header: map[string][]string{
				"Access-Control-Allow-Origin": {app}, "Access-Control-Allow-Credentials": {"true"}, "Vary": {"Accept-Encoding,Origin"},
			}},
		},
		{
			name: "refused origin passes without CORS headers", method: "GET", path: "/v1/items", host: "api.example.com",
			header: map[string]string{"Origin": "https://evil.example.net"},
			want: want{status: 200, upstream: true, body: "upstream", header: map[string][]string{
				"Access-Control-Allow-Origin": nil, "Access-Control-Allow-Credentials": nil, "Vary": {"Accept-Encoding,Origin"},
			}},
		},
		{
			name: "cross-origin protection refuses without calling the upstream", method: "POST", path: "/v1/items", host: "guarded.example.com",
			header: map[string]string{"Origin": "https://evil.example.net", "Sec-Fetch-Site": "cross-site"},
			want: want{status: 403, body: "cross-origin request refused by policies/guarded: the origin is not trusted\n",
				header: map[string][]string{"Access-Control-Allow-Origin": nil, "Vary": {"Origin"}, "Content-Type": {"text/plain; charset=utf-8"}}},
		},
		{
			name: "host with port selects the policy of the host", method: "GET", path: "/v1/items", host: "api.example.com:8443",
			header: map[string]string{"Origin": app},
			want:   want{status: 200, upstream: true, header: map[string][]string{"Access-Control-Allow-Origin": {app}}},
		},
		{
			name: "route context extension selects the policy", method: "GET", path: "/acme/v1/items", host: "unknown.example.com",
			header: map[string]string{"Origin": app},
			want:   want{status: 200, upstream: true, header: map[string][]string{"Access-Control-Allow-Origin": {app}}},
		},
		{
			name: "decider unavailable with failure_mode_allow: passes untouched", method: "GET", path: "/v1/items", host: "api.example.com",
			header: map[string]string{"Origin": app}, unavailable: true, failureModeAllow: true,
			want: want{status: 200, upstream: true, header: map[string][]string{"Access-Control-Allow-Origin": nil, "Vary": {"Accept-Encoding"}}},
		},
		{
			name: "decider unavailable without failure_mode_allow: status_on_error", method: "GET", path: "/v1/items", host: "api.example.com",
			header: map[string]string{"Origin": app}, unavailable: true,
			want: want{status: 403, header: map[string][]string{"Access-Control-Allow-Origin": nil}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newExtauthzDecider(t)
			d.unavailable = tt.unavailable
			var calls atomic.Int32
			upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				if r.URL.Path == "/own-cors" {
					w.Header().Set("Access-Control-Allow-Origin", "https://upstream.example")
				}
				w.Header().Set("Vary", "Accept-Encoding")
				_, _ = io.WriteString(w, "upstream")
			})
			emu, err := envoyemu.New(startAuthzGRPC(t, d), upstream, envoyemu.Config{
				ExtAuthz: safeExtAuthz(tt.failureModeAllow),
				ContextExtensions: func(r *http.Request) map[string]string {
					if strings.HasPrefix(r.URL.Path, "/acme/") {
						return map[string]string{"corsd_policy": "acme"}
					}
					return nil
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			front := httptest.NewServer(emu)
			t.Cleanup(front.Close)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, tt.method, front.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tt.host
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			res, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.want.status {
				t.Errorf("status = %d, want %d (body %q)", res.StatusCode, tt.want.status, body)
			}
			if got := calls.Load() > 0; got != tt.want.upstream || calls.Load() > 1 {
				t.Errorf("upstream called %d times, want called = %v", calls.Load(), tt.want.upstream)
			}
			for k, want := range tt.want.header {
				if diff := cmp.Diff(want, res.Header.Values(k)); diff != "" {
					t.Errorf("header %s mismatch (-want +got):\n%s", k, diff)
				}
			}
			if tt.want.body != "" && string(body) != tt.want.body {
				t.Errorf("body = %q, want %q", body, tt.want.body)
			}
		})
	}
}

// TestExtAuthzServerThroughEnvoyEmulator drives the real server (bbolt
// store, snapshot, interceptors) through the emulated Envoy filter,
// including a policy change made through the admin API.
func TestExtAuthzServerThroughEnvoyEmulator(t *testing.T) {
	const app, newcomer = "https://app.example.com", "https://new.example.com"
	e := newTokenEnv(t)
	e.create("acme", &corsdv1.Policy{
		Origins:        []*corsdv1.OriginRule{{Pattern: app, AllowCredentials: true}},
		AllowedMethods: []string{"PUT"},
		Hosts:          []string{"api.example.com"},
		MaxAge:         durationpb.New(600 * time.Second),
	})
	var calls atomic.Int32
	upstream := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		_, _ = io.WriteString(w, "upstream")
	})
	emu, err := envoyemu.New(authv3.NewAuthorizationClient(e.conn), upstream, envoyemu.Config{
		ExtAuthz: safeExtAuthz(false),
		ContextExtensions: func(r *http.Request) map[string]string {
			if strings.HasPrefix(r.URL.Path, "/acme/") {
				return map[string]string{"corsd_policy": "acme"}
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(emu)
	t.Cleanup(front.Close)
	host, path := "api.example.com", "/v1/items"
	// do returns status and headers only: the body is drained and closed here.
	type reply struct {
		StatusCode int
		Header     http.Header
	}
	do := func(method, origin string, extra ...string) reply {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, front.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header.Set("Origin", origin)
		for i := 0; i+1 < len(extra); i += 2 {
			req.Header.Set(extra[i], extra[i+1])
		}
		res, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		return reply{StatusCode: res.StatusCode, Header: res.Header}
	}

	res := do("OPTIONS", app, "Access-Control-Request-Method", "PUT")
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != app || res.Header.Get("Access-Control-Max-Age") != "600" || calls.Load() != 0 {
		t.Errorf("preflight: status %d, headers %v, upstream calls %d; want 204 with CORS headers and no upstream call", res.StatusCode, res.Header, calls.Load())
	}
	res = do("GET", newcomer)
	if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != "" || calls.Load() != 1 {
		t.Errorf("untrusted origin: status %d, headers %v, upstream calls %d; want 200 without CORS headers", res.StatusCode, res.Header, calls.Load())
	}

	if _, err := e.policy.AddOrigin(e.admin(), &corsdv1.AddOriginRequest{Policy: "policies/acme", Origin: &corsdv1.OriginRule{Pattern: newcomer}}); err != nil {
		t.Fatalf("AddOrigin: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		res = do("GET", newcomer)
		if res.Header.Get("Access-Control-Allow-Origin") == newcomer {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the added origin is not allowed through ext_authz after 5s: headers %v", res.Header)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := res.Header.Get("Access-Control-Allow-Credentials"); got != "" {
		t.Errorf("Access-Control-Allow-Credentials = %q for a rule without credentials", got)
	}

	// A route that names the policy: the host no longer matters.
	host, path = "elsewhere.example.com", "/acme/items"
	res = do("OPTIONS", app, "Access-Control-Request-Method", "PUT")
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != app {
		t.Errorf("preflight on a route naming acme: status %d, headers %v; want 204 with CORS headers", res.StatusCode, res.Header)
	}
	path = "/v1/items"
	res = do("OPTIONS", app, "Access-Control-Request-Method", "PUT")
	if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight for a host no policy governs: status %d, headers %v; want it passed to the upstream", res.StatusCode, res.Header)
	}
}
