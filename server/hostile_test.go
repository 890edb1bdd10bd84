package server

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/store/boltstore"
)

// hostileServer is a real Server on a real bbolt file with 12 policies
// governing wildcard hosts of several depths (the configuration with which a
// 400 KB :authority once cost 2.2 s) and one named policy, called in
// process (no transport: the handler's own cost is what is measured).
func hostileServer(tb testing.TB) (*Server, *authzServer) {
	tb.Helper()
	bs, err := boltstore.Open(filepath.Join(tb.TempDir(), "corsd.db"))
	if err != nil {
		tb.Fatalf("boltstore.Open: %v", err)
	}
	tb.Cleanup(func() { _ = bs.Close() })
	ctx := context.Background()
	for i := range 12 {
		host := fmt.Sprintf("*.%s.example.com", strings.Repeat("a.", i)+"api")
		p := &corsdv1.Policy{
			Name:           fmt.Sprintf("policies/p%d", i),
			Origins:        []*corsdv1.OriginRule{{Pattern: "https://app.example.com", AllowCredentials: true}, {Pattern: "https://*.example.org"}},
			AllowedMethods: []string{"GET", "PUT"}, AllowedRequestHeaders: []string{"content-type", "x-api-key"},
			Hosts: []string{host},
		}
		if _, err := bs.Create(ctx, p); err != nil {
			tb.Fatalf("Create: %v", err)
		}
	}
	srv, err := New(bs, WithLogger(discardLogger()))
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { _ = srv.Close() })
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := srv.WaitReady(wctx); err != nil {
		tb.Fatalf("WaitReady: %v", err)
	}
	return srv, newAuthzServer(srv)
}

// hostileCase is one ext_authz request, normal or hostile.
type hostileCase struct {
	name string
	req  *authv3.CheckRequest
	// code is the gRPC code Check answers with.
	code codes.Code
}

func hostileCases() []hostileCase {
	const mib = 1 << 20
	host := "x.api.example.com"
	normal := func() map[string]string {
		return map[string]string{"origin": "https://app.example.com", "access-control-request-method": "PUT", "access-control-request-headers": "content-type,x-api-key"}
	}
	withHeader := func(k, v string) *authv3.CheckRequest {
		h := normal()
		h[k] = v
		return authzHeaderReq("OPTIONS", host, h)
	}
	many := func() *authv3.CheckRequest {
		r := authzHeaderReq("OPTIONS", host, normal())
		for i := range 10_000 {
			r.Attributes.Request.Http.Headers[fmt.Sprintf("x-h-%d", i)] = "v"
		}
		return r
	}
	manyLines := func() *authv3.CheckRequest {
		kv := []string{":method", "OPTIONS", ":authority", host}
		for range 10_000 {
			kv = append(kv, "origin", "https://app.example.com")
		}
		return authzRawReq(kv...)
	}
	joined := func() *authv3.CheckRequest {
		// Lines that each pass but join into far more than any field may hold.
		kv := []string{":method", "OPTIONS", ":authority", host, "origin", "https://app.example.com", "access-control-request-method", "PUT"}
		for range 100 {
			kv = append(kv, "access-control-request-headers", strings.Repeat("a", 4<<10))
		}
		return authzRawReq(kv...)
	}
	deepHost := strings.Repeat("a.", mib/2) + "api.example.com"
	return []hostileCase{
		{name: "normal", req: authzHeaderReq("OPTIONS", host, normal())},
		{name: "1MiB_host", req: authzHeaderReq("OPTIONS", deepHost, normal())},
		{name: "1MiB_host_raw", req: authzRawReq(":method", "OPTIONS", ":authority", deepHost, "origin", "https://app.example.com", "access-control-request-method", "PUT")},
		{name: "1MiB_origin", req: withHeader("origin", "https://"+strings.Repeat("a.", mib/2)+"example.org")},
		{name: "1MiB_acrh", req: withHeader("access-control-request-headers", strings.Repeat("content-type,", mib/13))},
		{name: "1MiB_acrm", req: withHeader("access-control-request-method", strings.Repeat("P", mib))},
		{name: "1MiB_policy_name", req: withExtensions(authzHeaderReq("OPTIONS", host, normal()), map[string]string{authzPolicyKey: strings.Repeat("p", mib)})},
		{name: "100_lines_joined", req: joined()},
		{name: "10k_headers", req: many(), code: codes.InvalidArgument},
		{name: "10k_header_map_lines", req: manyLines(), code: codes.InvalidArgument},
	}
}

// TestExtAuthzHostileInputIsBounded: each hostile request is decided (or
// refused as a whole) in far less time than one such request took before
// its cost was bounded (seconds for a 400 KB host). The limit leaves three
// orders of magnitude for a slow, shared machine and the race detector.
func TestExtAuthzHostileInputIsBounded(t *testing.T) {
	_, a := hostileServer(t)
	ctx := context.Background()
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			const runs = 20
			start := time.Now()
			for range runs {
				resp, err := a.Check(ctx, tc.req)
				if got := codeOf(err); got != tc.code {
					t.Fatalf("Check: code %v (%v), want %v", got, err, tc.code)
				}
				if err == nil {
					checkAuthzInvariants(t, resp)
				}
			}
			if per := time.Since(start) / runs; per > 20*time.Millisecond {
				t.Errorf("Check took %v per call; want far below 20ms whatever the input", per)
			}
		})
	}
}

// TestExtAuthzOverlongJoinIsMalformed: header lines that would join past
// the limit are decided as a malformed list, without being joined.
func TestExtAuthzOverlongJoinIsMalformed(t *testing.T) {
	_, a := hostileServer(t)
	for _, tc := range hostileCases() {
		if tc.name != "100_lines_joined" {
			continue
		}
		resp, err := a.Check(context.Background(), tc.req)
		if err != nil {
			t.Fatal(err)
		}
		got := summarize(t, resp)
		if got.Denied != 403 || got.Meta["reason"] != "HEADERS_MALFORMED" {
			t.Errorf("over-long joined header list: denied %d reason %v, want 403 HEADERS_MALFORMED", got.Denied, got.Meta["reason"])
		}
	}
}

// TestHostLookupIsBounded: selecting a policy by a host of any length
// probes only the suffixes as long as a configured wildcard host.
func TestHostLookupIsBounded(t *testing.T) {
	srv, _ := hostileServer(t)
	snap := srv.live.cur.Load()
	if e := snap.lookup("", "x.a.a.api.example.com:8443"); e == nil || e.name != "policies/p2" {
		t.Fatalf("lookup(x.a.a.api.example.com:8443) = %v, want policies/p2", e)
	}
	long := strings.Repeat("a.", 200_000) + "api.example.com"
	start := time.Now()
	for range 100 {
		if e := snap.lookup("", long); e != nil {
			t.Fatalf("lookup(400 KB host) = %s, want none (no DNS name is that long)", e.name)
		}
	}
	if per := time.Since(start) / 100; per > time.Millisecond {
		t.Errorf("lookup of a 400 KB host took %v, want far below 1ms", per)
	}
	// Within DNS limits, the deepest host still costs only a bounded
	// number of probes; it must still be found.
	deep := strings.Repeat("b.", 100) + "a.a.a.a.a.a.a.a.a.a.a.api.example.com"
	if e := snap.lookup("", deep); e == nil || e.name != "policies/p11" {
		t.Errorf("lookup(deep host) = %v, want policies/p11", e)
	}
}

func codeOf(err error) codes.Code { return status.Code(err) }

// BenchmarkExtAuthzHostile measures hostile requests beside a normal one,
// through the ext_authz handler of a real server (in process).
func BenchmarkExtAuthzHostile(b *testing.B) {
	_, a := hostileServer(b)
	ctx := context.Background()
	for _, tc := range hostileCases() {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = a.Check(ctx, tc.req)
			}
		})
	}
}
