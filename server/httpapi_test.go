package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	corsdv1 "github.com/corsd/corsd/proto/corsd/v1"
	"github.com/corsd/corsd/server/console"
	"github.com/corsd/corsd/store/boltstore"
)

// httpEnv is env with the HTTP port (API and console) served on 127.0.0.1.
type httpEnv struct {
	*env
	url string
}

func newHTTPEnv(t *testing.T, cfg envConfig) *httpEnv {
	t.Helper()
	e := newEnv(t, cfg)
	h, err := e.srv.NewHTTPHandler(WithHTTPAPI(e.gs), WithConsole())
	if err != nil {
		t.Fatalf("NewHTTPHandler: %v", err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return &httpEnv{env: e, url: hs.URL}
}

// apiReply is one JSON/HTTP API answer.
type apiReply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// call POSTs body to the API method (such as "corsd.v1.PolicyService/ListPolicies").
func (e *httpEnv) call(method, token, body string, hdr ...string) apiReply {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url+"/"+method, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return e.do(req)
}

func (e *httpEnv) do(req *http.Request) apiReply {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := apiReply{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// wantError checks a Connect error reply.
func (r apiReply) wantError(t *testing.T, status int, code string) {
	t.Helper()
	if r.status != status || r.body["code"] != code {
		t.Fatalf("reply %d %s, want %d with code %q", r.status, r.raw, status, code)
	}
}

// fieldViolations returns the fields of the BadRequest detail of an error
// reply, as the console reads them (the detail's JSON form in "debug").
func (r apiReply) fieldViolations(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	details, _ := r.body["details"].([]any)
	for _, d := range details {
		dm, _ := d.(map[string]any)
		if dm["type"] != "google.rpc.BadRequest" {
			continue
		}
		debug, _ := dm["debug"].(map[string]any)
		fvs, _ := debug["fieldViolations"].([]any)
		for _, fv := range fvs {
			m, _ := fv.(map[string]any)
			out[fmt.Sprint(m["field"])] = fmt.Sprint(m["description"])
		}
	}
	return out
}

func TestHTTPAPI(t *testing.T) {
	e := newHTTPEnv(t, envConfig{opts: []Option{WithTokens(testTokens...)}})
	const list = "corsd.v1.PolicyService/ListPolicies"
	const create = "corsd.v1.PolicyService/CreatePolicy"

	t.Run("create and list with a write token", func(t *testing.T) {
		r := e.call(create, adminToken.Token, `{"policyId":"acme","policy":{"origins":[{"pattern":"https://App.Example.com","allowCredentials":true}]}}`)
		if r.status != http.StatusOK {
			t.Fatalf("CreatePolicy: %d %s", r.status, r.raw)
		}
		r = e.call(list, readerToken.Token, `{}`)
		if r.status != http.StatusOK || !strings.Contains(r.raw, `"name":"policies/acme"`) || !strings.Contains(r.raw, `"pattern":"https://app.example.com"`) {
			t.Fatalf("ListPolicies: %d %s", r.status, r.raw)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", ct)
		}
	})
	t.Run("the change log records the token's name", func(t *testing.T) {
		r := e.call("corsd.v1.PolicyService/ListChanges", readerToken.Token, `{"policy":"policies/acme"}`)
		if r.status != http.StatusOK || !strings.Contains(r.raw, `"actor":"admin"`) {
			t.Fatalf("ListChanges: %d %s", r.status, r.raw)
		}
	})
	t.Run("curl -d without a content type", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, e.url+"/"+list, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+readerToken.Token)
		if r := e.do(req); r.status != http.StatusOK {
			t.Fatalf("ListPolicies: %d %s", r.status, r.raw)
		}
	})
	t.Run("no token", func(t *testing.T) {
		e.call(list, "", `{}`).wantError(t, http.StatusUnauthorized, "unauthenticated")
	})
	t.Run("unknown token", func(t *testing.T) {
		e.call(list, "not-a-token-0123456789", `{}`).wantError(t, http.StatusUnauthorized, "unauthenticated")
	})
	t.Run("a cookie is no token", func(t *testing.T) {
		e.call(list, "", `{}`, "Cookie", "authorization=Bearer "+adminToken.Token).wantError(t, http.StatusUnauthorized, "unauthenticated")
	})
	t.Run("read-only token cannot write", func(t *testing.T) {
		e.call(create, readerToken.Token, `{"policyId":"nope","policy":{}}`).wantError(t, http.StatusForbidden, "permission_denied")
	})
	t.Run("field violations", func(t *testing.T) {
		r := e.call(create, adminToken.Token, `{"policyId":"bad","policy":{"origins":[{"pattern":"*","allowCredentials":true},{"pattern":"https://*.github.io","allowCredentials":true}]}}`)
		r.wantError(t, http.StatusBadRequest, "invalid_argument")
		fv := r.fieldViolations(t)
		for _, f := range []string{"policy.origins[0].allow_credentials", "policy.origins[1].pattern"} {
			if fv[f] == "" {
				t.Errorf("no violation of %s in %v (reply %s)", f, fv, r.raw)
			}
		}
	})
	t.Run("stale etag", func(t *testing.T) {
		r := e.call("corsd.v1.PolicyService/AddOrigin", adminToken.Token, `{"policy":"policies/acme","origin":{"pattern":"https://b.example.com"},"etag":"stale"}`)
		r.wantError(t, http.StatusConflict, "aborted")
	})
	t.Run("not found", func(t *testing.T) {
		e.call("corsd.v1.PolicyService/GetPolicy", readerToken.Token, `{"name":"policies/none"}`).wantError(t, http.StatusNotFound, "not_found")
	})
	t.Run("malformed JSON", func(t *testing.T) {
		e.call(list, readerToken.Token, `{"pageSize":`).wantError(t, http.StatusBadRequest, "invalid_argument")
	})
	t.Run("unknown field", func(t *testing.T) {
		r := e.call(create, adminToken.Token, `{"policyId":"typo","policy":{"origins":[{"pattern":"https://a.example","allowCredential":true}]}}`)
		r.wantError(t, http.StatusBadRequest, "invalid_argument")
	})
	t.Run("body too large", func(t *testing.T) {
		big := `{"policyId":"big","policy":{"description":"` + strings.Repeat("x", MaxHTTPBodyBytes) + `"}}`
		r := e.call(create, adminToken.Token, big)
		r.wantError(t, http.StatusTooManyRequests, "resource_exhausted")
		if r := e.call(list, readerToken.Token, `{}`); r.status != http.StatusOK {
			t.Fatalf("ListPolicies after an oversized call: %d %s", r.status, r.raw)
		}
	})
	t.Run("CheckOrigin", func(t *testing.T) {
		r := e.call("corsd.v1.DecisionService/CheckOrigin", "", `{"policy":"policies/acme","method":"GET","origin":"https://app.example.com"}`)
		if r.status != http.StatusOK || !strings.Contains(r.raw, `"allowed":true`) || !strings.Contains(r.raw, "Access-Control-Allow-Credentials") {
			t.Fatalf("CheckOrigin: %d %s", r.status, r.raw)
		}
	})
	t.Run("ext_authz, health and reflection are gRPC only", func(t *testing.T) {
		for _, m := range []string{"envoy.service.auth.v3.Authorization/Check", "grpc.health.v1.Health/Check", "grpc.reflection.v1.ServerReflection/ServerReflectionInfo"} {
			if r := e.call(m, adminToken.Token, `{}`); r.status != http.StatusNotFound {
				t.Errorf("%s over HTTP: %d %s, want 404", m, r.status, r.raw)
			}
		}
	})
}

// TestHTTPAPICrossOrigin checks that a page of another origin cannot call
// the API: no CORS header, preflights and cross-site calls refused.
func TestHTTPAPICrossOrigin(t *testing.T) {
	e := newHTTPEnv(t, envConfig{opts: []Option{WithTokens(testTokens...)}})
	const list = "corsd.v1.PolicyService/ListPolicies"
	tests := []struct {
		name   string
		method string
		hdr    []string
		want   int
	}{
		{name: "same origin", method: http.MethodPost, hdr: []string{"Origin", e.url, "Sec-Fetch-Site", "same-origin"}, want: http.StatusOK},
		{name: "no browser", method: http.MethodPost, want: http.StatusOK},
		{name: "other origin", method: http.MethodPost, hdr: []string{"Origin", "https://evil.example"}, want: http.StatusForbidden},
		{name: "other port", method: http.MethodPost, hdr: []string{"Origin", "http://127.0.0.1:1"}, want: http.StatusForbidden},
		{name: "same host behind a TLS proxy", method: http.MethodPost, hdr: []string{"Origin", strings.Replace(e.url, "http://", "https://", 1)}, want: http.StatusOK},
		{name: "opaque origin", method: http.MethodPost, hdr: []string{"Origin", "null"}, want: http.StatusForbidden},
		{name: "origin with a path", method: http.MethodPost, hdr: []string{"Origin", e.url + "/x"}, want: http.StatusForbidden},
		{name: "cross-site without origin", method: http.MethodPost, hdr: []string{"Sec-Fetch-Site", "cross-site"}, want: http.StatusForbidden},
		{name: "same-site", method: http.MethodPost, hdr: []string{"Sec-Fetch-Site", "same-site"}, want: http.StatusForbidden},
		{name: "preflight", method: http.MethodOptions, hdr: []string{"Origin", "https://evil.example", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type"}, want: http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, e.url+"/"+list, strings.NewReader(`{}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+readerToken.Token)
			for i := 0; i+1 < len(tt.hdr); i += 2 {
				req.Header.Set(tt.hdr[i], tt.hdr[i+1])
			}
			r := e.do(req)
			if r.status != tt.want {
				t.Errorf("status %d %s, want %d", r.status, r.raw, tt.want)
			}
			for k := range r.header {
				if strings.HasPrefix(strings.ToLower(k), "access-control-") || strings.EqualFold(k, "Set-Cookie") {
					t.Errorf("reply carries %s: %v", k, r.header[k])
				}
			}
		})
	}
}

// TestHTTPAPILoopbackRule checks the loopback rule over HTTP: without
// tokens a loopback caller is the admin "local", but only when it names a
// loopback host (no DNS rebinding).
func TestHTTPAPILoopbackRule(t *testing.T) {
	e := newHTTPEnv(t, envConfig{})
	r := e.call("corsd.v1.PolicyService/CreatePolicy", "", `{"policyId":"local","policy":{}}`)
	if r.status != http.StatusOK {
		t.Fatalf("CreatePolicy from loopback without tokens: %d %s", r.status, r.raw)
	}
	r = e.call("corsd.v1.PolicyService/ListChanges", "", `{}`)
	if !strings.Contains(r.raw, `"actor":"local"`) {
		t.Errorf("ListChanges: %d %s, want actor local", r.status, r.raw)
	}
	req, _ := http.NewRequest(http.MethodPost, e.url+"/corsd.v1.PolicyService/ListPolicies", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Host = "rebound.example:9090"
	e.do(req).wantError(t, http.StatusForbidden, "permission_denied")
}

// TestHTTPAPIWatch reads WatchPolicies over the Connect streaming protocol,
// as the console does with fetch.
func TestHTTPAPIWatch(t *testing.T) {
	e := newHTTPEnv(t, envConfig{opts: []Option{WithTokens(testTokens...)}})
	e.create("first", &corsdv1.Policy{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var body bytes.Buffer
	msg := []byte(`{"names":[]}`)
	body.WriteByte(0)
	_ = binary.Write(&body, binary.BigEndian, uint32(len(msg)))
	body.Write(msg)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/corsd.v1.DecisionService/WatchPolicies", &body)
	req.Header.Set("Content-Type", "application/connect+json")
	// With tokens configured, WatchPolicies needs the check scope.
	req.Header.Set("Authorization", "Bearer "+checkerToken.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("WatchPolicies: %d %s", resp.StatusCode, b)
	}
	br := bufio.NewReader(resp.Body)
	next := func() map[string]any {
		t.Helper()
		var hdr [5]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			t.Fatalf("read envelope: %v", err)
		}
		data := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
		if _, err := io.ReadFull(br, data); err != nil {
			t.Fatal(err)
		}
		if hdr[0]&2 != 0 {
			t.Fatalf("stream ended: %s", data)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := next(); m["type"] != "WATCH_EVENT_TYPE_SNAPSHOT" || m["name"] != "policies/first" {
		t.Fatalf("first event %v, want the snapshot of policies/first", m)
	}
	if m := next(); m["type"] != "WATCH_EVENT_TYPE_SYNCED" {
		t.Fatalf("second event %v, want SYNCED", m)
	}
	e.create("second", &corsdv1.Policy{})
	for {
		m := next()
		if m["type"] == "WATCH_EVENT_TYPE_PROGRESS" {
			continue
		}
		if m["type"] != "WATCH_EVENT_TYPE_PUT" || m["name"] != "policies/second" {
			t.Fatalf("event %v, want the PUT of policies/second", m)
		}
		break
	}
}

// TestConsoleHeaders checks the security headers of every console response.
func TestConsoleHeaders(t *testing.T) {
	e := newHTTPEnv(t, envConfig{})
	for _, path := range []string{"/console/", "/console/app.js", "/console/style.css", "/console/missing.js"} {
		resp, err := http.Get(e.url + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		for k, want := range map[string]string{
			"Content-Security-Policy": console.ContentSecurityPolicy,
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("GET %s: %s = %q, want %q", path, k, got, want)
			}
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("GET %s: CSP without frame-ancestors 'none'", path)
		}
	}
	for path, want := range map[string]int{"/console/": 200, "/console/app.js": 200, "/console/missing.js": 404} {
		resp, err := http.Get(e.url + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// TestHTTPAPIStreamLimit checks that server streams over HTTP are bounded:
// past the limit a watch fails with ResourceExhausted, and a slot frees
// when a stream ends.
func TestHTTPAPIStreamLimit(t *testing.T) {
	e := newEnv(t, envConfig{})
	h, err := e.srv.newAPIHandler(e.gs)
	if err != nil {
		t.Fatal(err)
	}
	g := h.(*apiGuard)
	g.streams = make(chan struct{}, 1)
	hs := httptest.NewServer(g)
	t.Cleanup(hs.Close)
	watch := func(ctx context.Context) *http.Response {
		t.Helper()
		body := append([]byte{0, 0, 0, 0, 2}, "{}"...)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, hs.URL+"/corsd.v1.DecisionService/WatchPolicies", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/connect+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	ctx, cancel := context.WithCancel(context.Background())
	first := watch(ctx)
	if first.StatusCode != http.StatusOK {
		t.Fatalf("first watch: %s", first.Status)
	}
	// Read the first event: the stream holds its slot from here on.
	var hdr [5]byte
	if _, err := io.ReadFull(first.Body, hdr[:]); err != nil {
		t.Fatal(err)
	}
	second := watch(context.Background())
	b, _ := io.ReadAll(second.Body)
	_ = second.Body.Close()
	if second.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), "resource_exhausted") {
		t.Errorf("second watch: %d %s, want 429 resource_exhausted", second.StatusCode, b)
	}
	cancel()
	_ = first.Body.Close()
	err = poll(t, 10*time.Second, func() bool {
		r := watch(context.Background())
		defer func() { _ = r.Body.Close() }()
		return r.StatusCode == http.StatusOK
	})
	if err != nil {
		t.Errorf("no slot freed after the first watch ended: %v", err)
	}
}

func poll(t *testing.T, within time.Duration, f func() bool) error {
	t.Helper()
	deadline := time.Now().Add(within)
	for !f() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func FuzzIsLoopbackHost(f *testing.F) {
	for _, s := range []string{"127.0.0.1:9090", "[::1]:9090", "localhost", "LOCALHOST:1", "rebound.example:9090", "127.1", "[::ffff:127.0.0.1]", "0.0.0.0", "", "[", "::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		got := isLoopbackHost(host)
		if got != isLoopbackHost(host) {
			t.Fatal("not deterministic")
		}
		if !got {
			return
		}
		h := host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			h = hh
		}
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if ip := net.ParseIP(h); !strings.EqualFold(h, "localhost") && (ip == nil || !ip.IsLoopback()) {
			t.Errorf("isLoopbackHost(%q) = true for a host that is neither localhost nor a loopback IP", host)
		}
	})
}

func FuzzSameHost(f *testing.F) {
	for _, s := range [][2]string{{"http://127.0.0.1:9090", "127.0.0.1:9090"}, {"https://Console.Example", "console.example"}, {"null", "null"}, {"http://a@b", "b"}, {"http://b/x", "b"}, {"file://", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, origin, host string) {
		if !sameHost(origin, host) {
			return
		}
		if host == "" || !strings.HasSuffix(strings.ToLower(origin), "://"+strings.ToLower(host)) {
			t.Errorf("sameHost(%q, %q) = true", origin, host)
		}
	})
}

// BenchmarkCheckOriginTransport compares one CheckOrigin call over gRPC and
// over the JSON/HTTP API, both on loopback TCP against the same server: the
// cost of transcoding.
func BenchmarkCheckOriginTransport(b *testing.B) {
	bs, err := boltstore.Open(filepath.Join(b.TempDir(), "corsd.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bs.Close() })
	srv, err := New(bs, WithLogger(discardLogger()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	gs := grpc.NewServer(srv.ServerOptions()...)
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	b.Cleanup(gs.Stop)
	h, err := srv.NewHTTPHandler(WithHTTPAPI(gs))
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(h)
	b.Cleanup(hs.Close)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	ctx := context.Background()
	if err := srv.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := corsdv1.NewPolicyServiceClient(conn).CreatePolicy(ctx, &corsdv1.CreatePolicyRequest{PolicyId: "bench", Policy: &corsdv1.Policy{Origins: []*corsdv1.OriginRule{{Pattern: "https://app.example.com", AllowCredentials: true}}}}); err != nil {
		b.Fatal(err)
	}
	e := struct {
		dec corsdv1.DecisionServiceClient
		url string
	}{corsdv1.NewDecisionServiceClient(conn), hs.URL}
	req := &corsdv1.CheckOriginRequest{Policy: "policies/bench", Method: "GET", Origin: "https://app.example.com"}
	b.Run("grpc", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			resp, err := e.dec.CheckOrigin(ctx, req)
			if err != nil || !resp.GetDecision().GetAllowed() {
				b.Fatalf("CheckOrigin: %v %v", resp, err)
			}
		}
	})
	b.Run("json-http", func(b *testing.B) {
		b.ReportAllocs()
		body := []byte(`{"policy":"policies/bench","method":"GET","origin":"https://app.example.com"}`)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
		for b.Loop() {
			resp, err := client.Post(e.url+"/corsd.v1.DecisionService/CheckOrigin", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !bytes.Contains(out, []byte(`"allowed":true`)) {
				b.Fatalf("CheckOrigin: %d %s", resp.StatusCode, out)
			}
		}
	})
}
