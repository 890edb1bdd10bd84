package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/corsd/corsd/policy"
)

const benchRules = 10_000

// benchExactPolicy has benchRules exact rules (every other one with
// credentials) plus a few wildcard rules, as a large multi-tenant policy.
func benchExactPolicy(b *testing.B) *policy.Policy {
	b.Helper()
	c := policy.Config{
		Name:                   "policies/bench",
		AllowedMethods:         []string{"PUT", "PATCH", "DELETE"},
		AllowedRequestHeaders:  []string{"Content-Type", "X-Request-Id", "Authorization"},
		ExposedResponseHeaders: []string{"X-Request-Id"},
		MaxAgeSet:              true,
		MaxAge:                 600e9,
	}
	for i := range benchRules {
		c.Origins = append(c.Origins, policy.Origin{Pattern: fmt.Sprintf("https://app-%d.example.com", i), AllowCredentials: i%2 == 0})
	}
	for i := range 10 {
		c.Origins = append(c.Origins, policy.Origin{Pattern: fmt.Sprintf("https://*.tenant-%d.example.net", i), AllowCredentials: true})
	}
	c.Origins = append(c.Origins, policy.Origin{Pattern: "http://localhost:*"})
	p, err := policy.Compile(c)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// benchWildcardPolicy has benchRules subdomain wildcard rules.
func benchWildcardPolicy(b *testing.B) *policy.Policy {
	b.Helper()
	c := policy.Config{Name: "policies/bench-wildcards"}
	for i := range benchRules {
		c.Origins = append(c.Origins, policy.Origin{Pattern: fmt.Sprintf("https://*.app-%d.example.com", i), AllowCredentials: i%2 == 0})
	}
	p, err := policy.Compile(c)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func BenchmarkCheck(b *testing.B) {
	exact := benchExactPolicy(b)
	wild := benchWildcardPolicy(b)
	benchmarks := []struct {
		name string
		p    *policy.Policy
		req  policy.Request
		want policy.Reason
	}{
		{name: "actual_allowed_exact", p: exact, req: policy.Request{Method: "GET", Host: "api.example.com", Origin: "https://app-5000.example.com"}, want: policy.ReasonAllowed},
		{name: "actual_refused", p: exact, req: policy.Request{Method: "GET", Host: "api.example.com", Origin: "https://app-5000.evil.example"}, want: policy.ReasonOriginNotAllowed},
		{name: "wildcard_subdomain", p: wild, req: policy.Request{Method: "GET", Host: "api.example.com", Origin: "https://x.app-5000.example.com"}, want: policy.ReasonAllowed},
		{name: "preflight_3_headers", p: exact, req: policy.Request{
			Method: "OPTIONS", Host: "api.example.com", Origin: "https://app-5000.example.com",
			AccessControlRequestMethod: "PUT", AccessControlRequestHeaders: "authorization,content-type,x-request-id",
		}, want: policy.ReasonAllowed},
		// Not the whole allowed list: the names are checked one by one.
		{name: "preflight_2_of_3_headers", p: exact, req: policy.Request{
			Method: "OPTIONS", Host: "api.example.com", Origin: "https://app-5000.example.com",
			AccessControlRequestMethod: "PUT", AccessControlRequestHeaders: "content-type,x-request-id",
		}, want: policy.ReasonAllowed},
		{name: "no_origin", p: exact, req: policy.Request{Method: "GET", Host: "api.example.com"}, want: policy.ReasonNoOrigin},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			if got := bm.p.Check(bm.req).Reason; got != bm.want {
				b.Fatalf("Check(%+v).Reason = %v, want %v", bm.req, got, bm.want)
			}
			b.ReportAllocs()
			// Consume the decision as a caller would, and as the floor
			// consumes its lookup.
			n := 0
			for b.Loop() {
				d := bm.p.Check(bm.req)
				n += len(d.Headers())
			}
			if n == 0 && bm.want != policy.ReasonNoOrigin {
				b.Fatal("no headers")
			}
		})
	}
}

// BenchmarkFloor_map_lookup is the floor the engine is measured against: a
// bare map lookup of the same origin in a map of as many entries: the
// allowed origin (a hit) and the refused one (a miss).
func BenchmarkFloor_map_lookup(b *testing.B) {
	m := make(map[string]struct{}, benchRules)
	for i := range benchRules {
		m[fmt.Sprintf("https://app-%d.example.com", i)] = struct{}{}
	}
	for _, tc := range []struct {
		name, origin string
		hit          bool
	}{
		{name: "hit", origin: "https://app-5000.example.com", hit: true},
		{name: "miss", origin: "https://app-5000.evil.example", hit: false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			hits := 0
			for b.Loop() {
				if _, ok := m[tc.origin]; ok {
					hits++
				}
			}
			if (hits > 0) != tc.hit {
				b.Fatalf("%d hits, want hit %v", hits, tc.hit)
			}
		})
	}
}

// hostileRequests are requests no browser sends, each beside the normal
// preflight it distorts: their cost must stay within a small factor of it,
// whatever their size, with no allocation.
func hostileRequests() []struct {
	name string
	req  policy.Request
} {
	const mib = 1 << 20
	normal := policy.Request{Method: "OPTIONS", Host: "api.example.com", Origin: "https://app-5000.example.com", AccessControlRequestMethod: "PUT", AccessControlRequestHeaders: "content-type,x-request-id"}
	with := func(f func(r *policy.Request)) policy.Request {
		r := normal
		f(&r)
		return r
	}
	return []struct {
		name string
		req  policy.Request
	}{
		{"normal", normal},
		{"1MiB_origin", with(func(r *policy.Request) { r.Origin = "https://" + strings.Repeat("a.", mib/2) + "tenant-1.example.net" })},
		{"1MiB_other_scheme_origin", with(func(r *policy.Request) { r.Origin = "chrome-extension://" + strings.Repeat("a", mib) })},
		{"1MiB_acrh", with(func(r *policy.Request) { r.AccessControlRequestHeaders = strings.Repeat("content-type,", mib/13) })},
		{"4KiB_acrh", with(func(r *policy.Request) {
			r.AccessControlRequestHeaders = strings.Repeat("content-type,", policy.MaxRequestHeadersBytes/13)
		})},
		{"4KiB_acrh_spaces", with(func(r *policy.Request) {
			r.AccessControlRequestHeaders = strings.Repeat(" ", policy.MaxRequestHeadersBytes)
		})},
		{"1MiB_acrm", with(func(r *policy.Request) { r.AccessControlRequestMethod = strings.Repeat("P", mib) })},
		{"1MiB_host_cross_origin", with(func(r *policy.Request) {
			r.Method, r.Host, r.Origin = "POST", strings.Repeat("a.", mib/2)+"example.com", "https://evil.example"
		})},
		{"1MiB_method", with(func(r *policy.Request) { r.Method = strings.Repeat("M", mib) })},
	}
}

func BenchmarkCheckHostile(b *testing.B) {
	p := benchExactPolicy(b)
	for _, tc := range hostileRequests() {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = p.Check(tc.req)
			}
		})
	}
}
