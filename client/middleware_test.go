package client_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/corsd/corsd/client"
	"github.com/corsd/corsd/policy"
)

// testConfig is the policy most middleware tests enforce.
var testConfig = policy.Config{
	Name:     "policies/acme",
	Revision: 7,
	Origins: []policy.Origin{
		{Pattern: "https://app.example.com", AllowCredentials: true},
		{Pattern: "https://*.example.org"},
	},
	AllowedMethods:         []string{"PUT", "DELETE"},
	AllowedRequestHeaders:  []string{"Content-Type", "X-Api-Key"},
	ExposedResponseHeaders: []string{"X-Request-Id"},
	MaxAge:                 10 * time.Minute,
	MaxAgeSet:              true,
	CrossOriginProtection:  true,
}

const varyPreflight = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network"

func mustCompile(t testing.TB, c policy.Config) *policy.Policy {
	t.Helper()
	p, err := policy.Compile(c)
	if err != nil {
		t.Fatalf("policy.Compile: %v", err)
	}
	return p
}

// notReady is a source without a snapshot yet.
type notReady struct{}

func (notReady) Ready() bool                  { return false }
func (notReady) Policy(string) *policy.Policy { return nil }

// inner is the protected handler: it marks the response so tests see that
// it ran.
var inner = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Inner", "called")
	w.WriteHeader(http.StatusOK)
})

func newRequest(method, target string, header http.Header) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for k, vs := range header {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	return r
}

func TestMiddleware(t *testing.T) {
	p := mustCompile(t, testConfig)
	reportOnly := testConfig
	reportOnly.Mode = policy.ModeReportOnly
	disabled := testConfig
	disabled.Mode = policy.ModeDisabled

	tests := []struct {
		name       string
		src        client.PolicySource
		opts       []client.Option
		method     string
		header     http.Header
		preset     http.Header // set on the response before the middleware runs
		wantStatus int
		wantHeader http.Header
	}{
		{
			name:       "actual request from a credentialed origin",
			src:        client.StaticSource(p),
			method:     "GET",
			header:     http.Header{"Origin": {"https://app.example.com"}},
			wantStatus: 200,
			wantHeader: http.Header{
				"Access-Control-Allow-Origin":      {"https://app.example.com"},
				"Access-Control-Allow-Credentials": {"true"},
				"Access-Control-Expose-Headers":    {"X-Request-Id"},
				"Vary":                             {"Origin"},
				"X-Inner":                          {"called"},
			},
		},
		{
			name:       "actual request from a wildcard origin",
			src:        client.StaticSource(p),
			method:     "GET",
			header:     http.Header{"Origin": {"https://a.b.example.org"}},
			wantStatus: 200,
			wantHeader: http.Header{
				"Access-Control-Allow-Origin":   {"https://a.b.example.org"},
				"Access-Control-Expose-Headers": {"X-Request-Id"},
				"Vary":                          {"Origin"},
				"X-Inner":                       {"called"},
			},
		},
		{
			name:       "actual request from a refused origin passes without CORS headers",
			src:        client.StaticSource(p),
			method:     "GET",
			header:     http.Header{"Origin": {"https://evil.example"}},
			wantStatus: 200,
			wantHeader: http.Header{"Vary": {"Origin"}, "X-Inner": {"called"}},
		},
		{
			name:       "no Origin: not CORS, Vary only",
			src:        client.StaticSource(p),
			method:     "GET",
			wantStatus: 200,
			wantHeader: http.Header{"Vary": {"Origin"}, "X-Inner": {"called"}},
		},
		{
			name:       "Vary is appended to, never replaced",
			src:        client.StaticSource(p),
			method:     "GET",
			header:     http.Header{"Origin": {"https://evil.example"}},
			preset:     http.Header{"Vary": {"Accept-Encoding"}},
			wantStatus: 200,
			wantHeader: http.Header{"Vary": {"Accept-Encoding", "Origin"}, "X-Inner": {"called"}},
		},
		{
			name:       "other CORS headers replace preset values",
			src:        client.StaticSource(p),
			method:     "GET",
			header:     http.Header{"Origin": {"https://app.example.com"}},
			preset:     http.Header{"Access-Control-Allow-Origin": {"*"}},
			wantStatus: 200,
			wantHeader: http.Header{
				"Access-Control-Allow-Origin":      {"https://app.example.com"},
				"Access-Control-Allow-Credentials": {"true"},
				"Access-Control-Expose-Headers":    {"X-Request-Id"},
				"Vary":                             {"Origin"},
				"X-Inner":                          {"called"},
			},
		},
		{
			name:   "allowed preflight is answered, next not called",
			src:    client.StaticSource(p),
			method: "OPTIONS",
			header: http.Header{
				"Origin":                         {"https://app.example.com"},
				"Access-Control-Request-Method":  {"PUT"},
				"Access-Control-Request-Headers": {"content-type,x-api-key"},
			},
			wantStatus: 204,
			wantHeader: http.Header{
				"Access-Control-Allow-Origin":      {"https://app.example.com"},
				"Access-Control-Allow-Credentials": {"true"},
				"Access-Control-Allow-Methods":     {"PUT, DELETE"},
				"Access-Control-Allow-Headers":     {"Content-Type, X-Api-Key"},
				"Access-Control-Max-Age":           {"600"},
				"Vary":                             {varyPreflight},
			},
		},
		{
			name:   "request headers on several field lines are one list",
			src:    client.StaticSource(p),
			method: "OPTIONS",
			header: http.Header{
				"Origin":                         {"https://app.example.com"},
				"Access-Control-Request-Method":  {"PUT"},
				"Access-Control-Request-Headers": {"content-type", "x-api-key"},
			},
			wantStatus: 204,
			wantHeader: http.Header{
				"Access-Control-Allow-Origin":      {"https://app.example.com"},
				"Access-Control-Allow-Credentials": {"true"},
				"Access-Control-Allow-Methods":     {"PUT, DELETE"},
				"Access-Control-Allow-Headers":     {"Content-Type, X-Api-Key"},
				"Access-Control-Max-Age":           {"600"},
				"Vary":                             {varyPreflight},
			},
		},
		{
			name:   "preflight asking for an unlisted header is refused",
			src:    client.StaticSource(p),
			method: "OPTIONS",
			header: http.Header{
				"Origin":                         {"https://app.example.com"},
				"Access-Control-Request-Method":  {"PUT"},
				"Access-Control-Request-Headers": {"x-other"},
			},
			wantStatus: 403,
			wantHeader: http.Header{"Vary": {varyPreflight}},
		},
		{
			name:   "preflight from a refused origin is refused",
			src:    client.StaticSource(p),
			method: "OPTIONS",
			header: http.Header{
				"Origin":                        {"https://evil.example"},
				"Access-Control-Request-Method": {"PUT"},
			},
			wantStatus: 403,
			wantHeader: http.Header{"Vary": {varyPreflight}},
		},
		{
			name:       "Origin on two field lines is malformed",
			src:        client.StaticSource(p),
			method:     "GET",
			header:     http.Header{"Origin": {"https://app.example.com", "https://app.example.com"}},
			wantStatus: 200,
			wantHeader: http.Header{"Vary": {"Origin"}, "X-Inner": {"called"}},
		},
		{
			name:       "OPTIONS without Access-Control-Request-Method is an actual request",
			src:        client.StaticSource(p),
			method:     "OPTIONS",
			header:     http.Header{"Origin": {"https://app.example.com"}},
			wantStatus: 200,
			wantHeader: http.Header{
				"Access-Control-Allow-Origin":      {"https://app.example.com"},
				"Access-Control-Allow-Credentials": {"true"},
				"Access-Control-Expose-Headers":    {"X-Request-Id"},
				"Vary":                             {"Origin"},
				"X-Inner":                          {"called"},
			},
		},
		{
			name:       "cross-site POST from an untrusted origin is refused with 403",
			src:        client.StaticSource(p),
			method:     "POST",
			header:     http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}},
			wantStatus: 403,
			wantHeader: http.Header{"Vary": {"Origin"}, "Content-Type": {"text/plain; charset=utf-8"}},
		},
		{
			name:       "cross-site POST without Origin is refused with 403",
			src:        client.StaticSource(p),
			method:     "POST",
			header:     http.Header{"Sec-Fetch-Site": {"cross-site"}},
			wantStatus: 403,
			wantHeader: http.Header{"Vary": {"Origin"}, "Content-Type": {"text/plain; charset=utf-8"}},
		},
		{
			name:       "cross-site POST from a trusted origin passes",
			src:        client.StaticSource(p),
			method:     "POST",
			header:     http.Header{"Origin": {"https://x.example.org"}, "Sec-Fetch-Site": {"cross-site"}},
			wantStatus: 200,
			wantHeader: http.Header{
				"Access-Control-Allow-Origin":   {"https://x.example.org"},
				"Access-Control-Expose-Headers": {"X-Request-Id"},
				"Vary":                          {"Origin"},
				"X-Inner":                       {"called"},
			},
		},
		{
			name:       "report-only policy changes nothing",
			src:        client.StaticSource(mustCompile(t, reportOnly)),
			method:     "POST",
			header:     http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}},
			wantStatus: 200,
			wantHeader: http.Header{"X-Inner": {"called"}},
		},
		{
			name:   "WithReportOnly changes nothing, even for a preflight",
			src:    client.StaticSource(p),
			opts:   []client.Option{client.WithReportOnly()},
			method: "OPTIONS",
			header: http.Header{
				"Origin":                        {"https://app.example.com"},
				"Access-Control-Request-Method": {"PUT"},
			},
			wantStatus: 200,
			wantHeader: http.Header{"X-Inner": {"called"}},
		},
		{
			name:       "disabled policy changes nothing",
			src:        client.StaticSource(mustCompile(t, disabled)),
			method:     "OPTIONS",
			header:     http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"PUT"}},
			wantStatus: 200,
			wantHeader: http.Header{"X-Inner": {"called"}},
		},
		{
			name:       "unknown policy: no policy, passes untouched",
			src:        client.StaticSource(nil),
			method:     "OPTIONS",
			header:     http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"PUT"}},
			wantStatus: 200,
			wantHeader: http.Header{"X-Inner": {"called"}},
		},
		{
			name:       "not ready: preflight refused with 503",
			src:        notReady{},
			method:     "OPTIONS",
			header:     http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"PUT"}},
			wantStatus: 503,
			wantHeader: http.Header{"Vary": {"Origin"}},
		},
		{
			name:       "not ready: actual request passes without CORS headers",
			src:        notReady{},
			method:     "GET",
			header:     http.Header{"Origin": {"https://app.example.com"}},
			wantStatus: 200,
			wantHeader: http.Header{"Vary": {"Origin"}, "X-Inner": {"called"}},
		},
		{
			name:       "not ready with WithPassThroughUntilReady: preflight passes untouched",
			src:        notReady{},
			opts:       []client.Option{client.WithPassThroughUntilReady()},
			method:     "OPTIONS",
			header:     http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"PUT"}},
			wantStatus: 200,
			wantHeader: http.Header{"X-Inner": {"called"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hooked atomic.Int32
			opts := append([]client.Option{client.WithDecisionHook(func(*http.Request, *policy.Decision) { hooked.Add(1) })}, tt.opts...)
			h := client.Middleware("policies/acme", tt.src, opts...)(inner)
			r := newRequest(tt.method, "http://api.example.com/items", tt.header)
			w := httptest.NewRecorder()
			for k, v := range tt.preset {
				w.Header()[k] = append([]string(nil), v...)
			}
			h.ServeHTTP(w, r)
			if w.Code != tt.wantStatus {
				t.Errorf("%s %v: status = %d, want %d", tt.method, tt.header, w.Code, tt.wantStatus)
			}
			if diff := cmp.Diff(tt.wantHeader, w.Header()); diff != "" {
				t.Errorf("%s %v: response headers mismatch (-want +got)\n%s", tt.method, tt.header, diff)
			}
			if hooked.Load() != 1 {
				t.Errorf("decision hook called %d times, want 1", hooked.Load())
			}
		})
	}
}

func TestMiddlewareHookSeesDecision(t *testing.T) {
	p := mustCompile(t, testConfig)
	var got policy.Decision
	h := client.Middleware("policies/acme", client.StaticSource(p), client.WithDecisionHook(func(_ *http.Request, d *policy.Decision) {
		got = *d
	}))(inner)
	r := newRequest("GET", "http://api.example.com/", http.Header{"Origin": {"https://evil.example"}})
	h.ServeHTTP(httptest.NewRecorder(), r)
	if got.Reason != policy.ReasonOriginNotAllowed || got.Policy != "policies/acme" || got.Revision != 7 || got.Origin != "https://evil.example" {
		t.Errorf("hook got %+v, want ReasonOriginNotAllowed from policies/acme revision 7 for https://evil.example", got)
	}
	if got.Message() == "" {
		t.Error("hook decision has no message")
	}
}

// TestMiddlewareDoesNotShareValueSlices checks that an outer middleware
// that edits the value slices of one response, in place or by appending,
// cannot change what the next responses get.
func TestMiddlewareDoesNotShareValueSlices(t *testing.T) {
	p := mustCompile(t, testConfig)
	h := client.Middleware("policies/acme", client.StaticSource(p))(inner)
	mutate := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r)
			hdr := w.Header()
			for k, v := range hdr {
				for i := range v {
					v[i] = "corrupted"
				}
				hdr[k] = append(v, "appended")
			}
		})
	}
	outer := mutate(h)
	reqs := []*http.Request{
		newRequest("GET", "http://api.example.com/", http.Header{"Origin": {"https://app.example.com"}}),
		newRequest("GET", "http://api.example.com/", nil),
		newRequest("OPTIONS", "http://api.example.com/", http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"PUT"}}),
	}
	want := make([]http.Header, len(reqs))
	for i, r := range reqs {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		want[i] = w.Header().Clone()
	}
	for round := range 3 {
		for i, r := range reqs {
			outer.ServeHTTP(httptest.NewRecorder(), r) // corrupts its own response
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if diff := cmp.Diff(want[i], w.Header()); diff != "" {
				t.Errorf("round %d, request %d: headers after an outer middleware edited another response (-want +got)\n%s", round, i, diff)
			}
		}
	}
	// Within one response too: an append to one header must not overwrite
	// another header's value.
	w := httptest.NewRecorder()
	h.ServeHTTP(w, reqs[0])
	hdr := w.Header()
	hdr["Access-Control-Allow-Origin"] = append(hdr["Access-Control-Allow-Origin"], "x")
	if got := hdr["Access-Control-Allow-Credentials"]; !cmp.Equal(got, []string{"true"}) {
		t.Errorf("after appending to Access-Control-Allow-Origin, Access-Control-Allow-Credentials = %q, want [true]", got)
	}
}

// TestMiddlewarePresetVaryNotMutated checks that appending Vary does not
// write into a slice that the caller set (and may share).
func TestMiddlewarePresetVaryNotMutated(t *testing.T) {
	p := mustCompile(t, testConfig)
	h := client.Middleware("policies/acme", client.StaticSource(p))(inner)
	shared := make([]string, 1, 4)
	shared[0] = "Accept-Encoding"
	for range 2 {
		w := httptest.NewRecorder()
		w.Header()["Vary"] = shared
		h.ServeHTTP(w, newRequest("GET", "http://api.example.com/", nil))
		if got := w.Header()["Vary"]; !cmp.Equal(got, []string{"Accept-Encoding", "Origin"}) {
			t.Errorf("Vary = %q, want [Accept-Encoding Origin]", got)
		}
	}
	if full := shared[:cap(shared)]; full[1] != "" {
		t.Errorf("the preset Vary slice's spare capacity was written: %q", full)
	}
}

// TestMiddlewareConcurrent exercises the middleware from many goroutines
// (run with -race).
func TestMiddlewareConcurrent(t *testing.T) {
	p := mustCompile(t, testConfig)
	var hooked atomic.Int64
	h := client.Middleware("policies/acme", client.StaticSource(p), client.WithDecisionHook(func(_ *http.Request, d *policy.Decision) {
		if d.Policy != "policies/acme" {
			t.Errorf("hook got policy %q", d.Policy)
		}
		hooked.Add(1)
	}))(inner)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				origin := "https://app.example.com"
				if (g+i)%2 == 0 {
					origin = "https://evil.example"
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, newRequest("GET", "http://api.example.com/", http.Header{"Origin": {origin}}))
				allowed := w.Header().Get("Access-Control-Allow-Origin") == origin
				if allowed != (origin == "https://app.example.com") {
					t.Errorf("origin %s: Access-Control-Allow-Origin = %q", origin, w.Header().Get("Access-Control-Allow-Origin"))
				}
			}
		})
	}
	wg.Wait()
	if hooked.Load() != 8*200 {
		t.Errorf("hook called %d times, want %d", hooked.Load(), 8*200)
	}
}
