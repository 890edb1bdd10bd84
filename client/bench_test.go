package client_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jcors "github.com/jub0bs/cors"
	"github.com/rs/cors"

	"github.com/corsd/corsd/client"
	"github.com/corsd/corsd/policy"
)

// benchWriter is a minimal, reusable ResponseWriter: both middlewares write
// into the same one, whose Header map is cleared between iterations (so
// neither pays for growing the map).
type benchWriter struct {
	h      http.Header
	status int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(status int)      { w.status = status }
func (w *benchWriter) reset() {
	clear(w.h)
	w.status = 0
}

// benchInner is the protected handler of both middlewares.
var benchInner = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })

// benchPolicy and benchRSCors are configured alike: two trusted origins
// with credentials (rs/cors has one credentials switch for all origins),
// PUT and DELETE beyond the safelisted methods, three request headers, one
// exposed header, a max age.
var benchPolicy = policy.Config{
	Name: "policies/bench",
	Origins: []policy.Origin{
		{Pattern: "https://app.example.com", AllowCredentials: true},
		{Pattern: "https://*.example.org", AllowCredentials: true},
	},
	AllowedMethods:         []string{"GET", "HEAD", "POST", "PUT", "DELETE"},
	AllowedRequestHeaders:  []string{"Content-Type", "X-Api-Key", "X-Requested-With"},
	ExposedResponseHeaders: []string{"X-Request-Id"},
	MaxAge:                 10 * time.Minute,
	MaxAgeSet:              true,
}

var benchRSCors = cors.Options{
	AllowedOrigins:   []string{"https://app.example.com", "https://*.example.org"},
	AllowedMethods:   []string{"GET", "HEAD", "POST", "PUT", "DELETE"},
	AllowedHeaders:   []string{"Content-Type", "X-Api-Key", "X-Requested-With"},
	ExposedHeaders:   []string{"X-Request-Id"},
	MaxAge:           600,
	AllowCredentials: true,
}

// benchJCors is the same configuration for jub0bs/cors (which lists the
// safelisted methods implicitly and refuses listing them).
var benchJCors = jcors.Config{
	Origins:         []string{"https://app.example.com", "https://*.example.org"},
	Credentialed:    true,
	Methods:         []string{"PUT", "DELETE"},
	RequestHeaders:  []string{"Content-Type", "X-Api-Key", "X-Requested-With"},
	MaxAgeInSeconds: 600,
	ResponseHeaders: []string{"X-Request-Id"},
}

type benchCase struct {
	name        string
	req         *http.Request
	wantAllowed bool // Access-Control-Allow-Origin is set
	wantStatus  int
}

func benchCases() []benchCase {
	req := func(method string, h http.Header) *http.Request {
		r := httptest.NewRequest(method, "http://api.example.com/items", nil)
		r.Header = h
		return r
	}
	huge := strings.Repeat("x-api-key,", (1<<20)/10)
	huge += strings.Repeat("a", 1<<20-len(huge))
	return []benchCase{
		{name: "actual_allowed", req: req("GET", http.Header{"Origin": {"https://app.example.com"}}), wantAllowed: true, wantStatus: 200},
		{name: "actual_refused", req: req("GET", http.Header{"Origin": {"https://evil.example"}}), wantStatus: 200},
		{name: "no_origin", req: req("GET", http.Header{}), wantStatus: 200},
		{name: "preflight_1_header", req: req("OPTIONS", http.Header{
			"Origin":                         {"https://app.example.com"},
			"Access-Control-Request-Method":  {"PUT"},
			"Access-Control-Request-Headers": {"content-type"},
		}), wantAllowed: true, wantStatus: 204},
		{name: "preflight_3_headers", req: req("OPTIONS", http.Header{
			"Origin":                         {"https://app.example.com"},
			"Access-Control-Request-Method":  {"PUT"},
			"Access-Control-Request-Headers": {"content-type,x-api-key,x-requested-with"},
		}), wantAllowed: true, wantStatus: 204},
		{name: "preflight_1MiB_headers", req: req("OPTIONS", http.Header{
			"Origin":                         {"https://app.example.com"},
			"Access-Control-Request-Method":  {"PUT"},
			"Access-Control-Request-Headers": {huge},
		}), wantAllowed: false},
	}
}

// BenchmarkMiddleware compares the SDK middleware with rs/cors and
// jub0bs/cors on the same
// requests, ResponseWriter and inner handler.
func BenchmarkMiddleware(b *testing.B) {
	p, err := policy.Compile(benchPolicy)
	if err != nil {
		b.Fatal(err)
	}
	jm, err := jcors.NewMiddleware(benchJCors)
	if err != nil {
		b.Fatal(err)
	}
	impls := []struct {
		name string
		h    http.Handler
	}{
		{name: "corsd", h: client.Middleware("policies/bench", client.StaticSource(p))(benchInner)},
		{name: "rs-cors", h: cors.New(benchRSCors).Handler(benchInner)},
		{name: "jub0bs-cors", h: jm.Wrap(benchInner)},
	}
	for _, tc := range benchCases() {
		impls := append(impls, struct {
			name string
			h    http.Handler
		}{name: "floor", h: floorHandler(b, impls[0].h, tc.req)})
		for _, impl := range impls {
			b.Run(tc.name+"/"+impl.name, func(b *testing.B) {
				w := &benchWriter{h: make(http.Header, 8)}
				// Both must decide alike, or the comparison means nothing.
				impl.h.ServeHTTP(w, tc.req)
				allowed := w.h.Get("Access-Control-Allow-Origin") != ""
				if allowed != tc.wantAllowed || (tc.wantStatus != 0 && w.status != tc.wantStatus) {
					b.Fatalf("%s: allowed %v status %d, want allowed %v status %d", impl.name, allowed, w.status, tc.wantAllowed, tc.wantStatus)
				}
				b.ReportAllocs()
				for b.Loop() {
					w.reset()
					impl.h.ServeHTTP(w, tc.req)
				}
			})
		}
	}
}

// floorHandler returns the "floor" of a case: a handler that decides
// nothing and performs only the header map writes that corsd performs for
// req (same keys and values, each in a fresh one-element slice, as corsd
// guarantees), then answers or calls the inner handler as corsd does. The
// slices are carved from a preallocated chunk, the cheapest way to get
// fresh ones. Neither middleware can do less work and keep that guarantee.
func floorHandler(b *testing.B, corsd http.Handler, req *http.Request) http.Handler {
	b.Helper()
	w := &benchWriter{h: make(http.Header, 8)}
	corsd.ServeHTTP(w, req)
	type kv struct{ k, v string }
	var hs []kv
	for k, vs := range w.h {
		if len(vs) != 1 {
			b.Fatalf("corsd wrote %d values for %s", len(vs), k)
		}
		hs = append(hs, kv{k, vs[0]})
	}
	status := w.status
	answers := req.Method == http.MethodOptions
	var free []string
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if len(free) < len(hs) {
			free = make([]string, 256)
		}
		for i, x := range hs {
			free[i] = x.v
			h[x.k] = free[i : i+1 : i+1]
		}
		free = free[len(hs):]
		if answers {
			w.WriteHeader(status)
			return
		}
		benchInner.ServeHTTP(w, r)
	})
}

// BenchmarkReporter is the cost of counting a decision for corsd: the same
// report-only middleware and request with and without a Reporter.
func BenchmarkReporter(b *testing.B) {
	cfg := benchPolicy
	cfg.Mode = policy.ModeReportOnly
	p, err := policy.Compile(cfg)
	if err != nil {
		b.Fatal(err)
	}
	rep, err := client.NewReporter(client.New(nil), "bench")
	if err != nil {
		b.Fatal(err)
	}
	req := newRequest("GET", "http://api.example.com/items", http.Header{"Origin": {"https://evil.example"}})
	for _, tc := range []struct {
		name string
		opts []client.Option
	}{
		{name: "without", opts: nil},
		{name: "with", opts: []client.Option{client.WithReporter(rep)}},
	} {
		h := client.Middleware("policies/bench", client.StaticSource(p), tc.opts...)(benchInner)
		b.Run(tc.name, func(b *testing.B) {
			w := &benchWriter{h: make(http.Header, 8)}
			b.ReportAllocs()
			for b.Loop() {
				w.reset()
				h.ServeHTTP(w, req)
			}
		})
		// All cores at once: the Reporter's lock is shared.
		b.Run(tc.name+"_parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := &benchWriter{h: make(http.Header, 8)}
				for pb.Next() {
					w.reset()
					h.ServeHTTP(w, req)
				}
			})
		})
	}
}
