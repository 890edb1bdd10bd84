package server

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/corsd/corsd/policy"
)

var extauthzUpdate = flag.Bool("update", false, "rewrite the ext_authz golden files under testdata/extauthz")

const (
	actOverwrite = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	actAppend    = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD

	varyPreflightValue = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network"
)

// authzHeaderReq builds a CheckRequest as Envoy does by default: lower-case
// header keys in the headers map, pseudo-headers included, and the method
// and host attributes set.
func authzHeaderReq(method, host string, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{":method": method, ":authority": host, ":path": "/v1/items", ":scheme": "https"}
	maps.Copy(h, headers)
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Host: host, Path: "/v1/items", Scheme: "https", Headers: h},
	}}}
}

// authzRawReq builds a CheckRequest as Envoy does with encode_raw_headers:
// header_map entries with raw_value bytes, one per field line, and no
// method or host attribute (so the pseudo-headers are used).
func authzRawReq(kv ...string) *authv3.CheckRequest {
	hm := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{HeaderMap: hm},
	}}}
}

func withExtensions(req *authv3.CheckRequest, ext map[string]string) *authv3.CheckRequest {
	req.Attributes.ContextExtensions = ext
	return req
}

// authzHdr is one header option of a response.
type authzHdr struct {
	Key    string
	Value  string
	Action corev3.HeaderValueOption_HeaderAppendAction
}

// authzSummary is every field of a CheckResponse that Envoy acts on.
type authzSummary struct {
	Code    codes.Code
	Denied  int // HTTP status of denied_response; 0 for ok_response
	Headers []authzHdr
	Body    string
	Meta    map[string]any
}

func summarize(t *testing.T, resp *authv3.CheckResponse) authzSummary {
	t.Helper()
	checkAuthzInvariants(t, resp)
	s := authzSummary{Code: codes.Code(resp.GetStatus().GetCode())}
	hs := resp.GetOkResponse().GetResponseHeadersToAdd()
	if d := resp.GetDeniedResponse(); d != nil {
		s.Denied = int(d.GetStatus().GetCode())
		s.Body = d.GetBody()
		hs = d.GetHeaders()
	}
	for _, o := range hs {
		s.Headers = append(s.Headers, authzHdr{o.GetHeader().GetKey(), o.GetHeader().GetValue(), o.GetAppendAction()})
	}
	if m := resp.GetDynamicMetadata().GetFields()[authzMetadataKey]; m != nil {
		s.Meta = m.GetStructValue().AsMap()
	}
	return s
}

// checkAuthzInvariants checks what must hold for every response.
func checkAuthzInvariants(t testing.TB, resp *authv3.CheckResponse) {
	t.Helper()
	if resp.GetStatus() == nil {
		t.Fatalf("status not set (Envoy reads an absent status as OK): %v", resp)
	}
	ok, denied := resp.GetOkResponse(), resp.GetDeniedResponse()
	if (ok == nil) == (denied == nil) || resp.GetErrorResponse() != nil {
		t.Fatalf("want exactly one of ok_response and denied_response: %v", resp)
	}
	code := codes.Code(resp.GetStatus().GetCode())
	if ok != nil && code != codes.OK || denied != nil && code != codes.PermissionDenied {
		t.Errorf("status %v does not match the response kind: %v", code, resp)
	}
	if denied != nil && denied.GetStatus() == nil {
		t.Errorf("denied_response without an HTTP status (Envoy would send 403): %v", resp)
	}
	if len(ok.GetHeaders()) > 0 || len(ok.GetHeadersToRemove()) > 0 || len(ok.GetQueryParametersToSet()) > 0 || ok.GetDynamicMetadata() != nil { //nolint:staticcheck // checking the deprecated field stays unset
		t.Errorf("ok_response changes the upstream request: %v", ok)
	}
	hs := append(append([]*corev3.HeaderValueOption(nil), ok.GetResponseHeadersToAdd()...), denied.GetHeaders()...)
	var acao, acac string
	for _, o := range hs {
		k, v := o.GetHeader().GetKey(), o.GetHeader().GetValue()
		if v == "" || k == "" {
			t.Errorf("empty header key or value: %v", o)
		}
		if len(o.GetHeader().GetRawValue()) > 0 || o.GetAppend() != nil || o.GetKeepEmptyValue() { //nolint:staticcheck // checking the deprecated field stays unset
			t.Errorf("header option uses raw_value, append or keep_empty_value: %v", o)
		}
		want := actOverwrite
		if strings.EqualFold(k, "vary") {
			want = actAppend
		}
		if o.GetAppendAction() != want {
			t.Errorf("header %s has append_action %v, want %v", k, o.GetAppendAction(), want)
		}
		switch strings.ToLower(k) {
		case "access-control-allow-origin":
			acao = v
		case "access-control-allow-credentials":
			acac = v
		}
	}
	if acao == "*" && acac != "" {
		t.Errorf("Access-Control-Allow-Origin: * with Access-Control-Allow-Credentials: %v", resp)
	}
	if _, err := proto.Marshal(resp); err != nil {
		t.Errorf("response does not marshal: %v", err)
	}
}

func meta(kind, reason, pol string, rev float64, allowed bool, mode string) map[string]any {
	return map[string]any{"kind": kind, "reason": reason, "policy": pol, "revision": rev, "allowed": allowed, "mode": mode, "report_only": mode == "REPORT_ONLY"}
}

func TestExtAuthzCheck(t *testing.T) {
	app := "https://app.example.com"
	acmeAllowed := meta("ACTUAL", "ALLOWED", "policies/acme", 7, true, "ENFORCE")
	actualAllowed := []authzHdr{
		{"access-control-allow-origin", app, actOverwrite},
		{"access-control-allow-credentials", "true", actOverwrite},
		{"vary", "Origin", actAppend},
	}
	preflightAllowed := []authzHdr{
		{"access-control-allow-origin", app, actOverwrite},
		{"access-control-allow-credentials", "true", actOverwrite},
		{"access-control-allow-methods", "GET, PUT", actOverwrite},
		{"access-control-allow-headers", "content-type, authorization", actOverwrite},
		{"access-control-max-age", "600", actOverwrite},
		{"vary", varyPreflightValue, actAppend},
	}
	varyOrigin := []authzHdr{{"vary", "Origin", actAppend}}
	malformed := meta("ACTUAL", "ORIGIN_MALFORMED", "policies/acme", 7, false, "ENFORCE")

	tests := []struct {
		name     string
		req      *authv3.CheckRequest
		want     authzSummary
		wantName string         // the policy name passed to the decider
		wantReq  policy.Request // nil-valued fields are not checked when zero
	}{
		{
			name: "preflight allowed: lower-case keys and pseudo-headers",
			req:  authzHeaderReq("OPTIONS", "api.example.com", map[string]string{"origin": app, "access-control-request-method": "PUT", "access-control-request-headers": "authorization,content-type"}),
			want: authzSummary{Code: codes.PermissionDenied, Denied: 204, Headers: preflightAllowed, Meta: meta("PREFLIGHT", "ALLOWED", "policies/acme", 7, true, "ENFORCE")},
		},
		{
			name: "preflight refused origin: 403 with Vary only",
			req:  authzHeaderReq("OPTIONS", "api.example.com", map[string]string{"origin": "https://evil.example.net", "access-control-request-method": "PUT"}),
			want: authzSummary{Code: codes.PermissionDenied, Denied: 403, Headers: []authzHdr{{"vary", varyPreflightValue, actAppend}}, Meta: meta("PREFLIGHT", "ORIGIN_NOT_ALLOWED", "policies/acme", 7, false, "ENFORCE")},
		},
		{
			name: "preflight refused method",
			req:  authzHeaderReq("OPTIONS", "api.example.com", map[string]string{"origin": app, "access-control-request-method": "DELETE"}),
			want: authzSummary{Code: codes.PermissionDenied, Denied: 403, Headers: []authzHdr{{"vary", varyPreflightValue, actAppend}}, Meta: meta("PREFLIGHT", "METHOD_NOT_ALLOWED", "policies/acme", 7, false, "ENFORCE")},
		},
		{
			name: "actual allowed with credentials: CORS headers overwrite, Vary appends",
			req:  authzHeaderReq("GET", "api.example.com", map[string]string{"origin": app}),
			want: authzSummary{Code: codes.OK, Headers: actualAllowed, Meta: acmeAllowed},
		},
		{
			name: "actual refused origin passes with Vary only",
			req:  authzHeaderReq("GET", "api.example.com", map[string]string{"origin": "https://evil.example.net"}),
			want: authzSummary{Code: codes.OK, Headers: varyOrigin, Meta: meta("ACTUAL", "ORIGIN_NOT_ALLOWED", "policies/acme", 7, false, "ENFORCE")},
		},
		{
			name: "no Origin passes with Vary: Origin",
			req:  authzHeaderReq("GET", "api.example.com", nil),
			want: authzSummary{Code: codes.OK, Headers: varyOrigin, Meta: meta("NOT_CORS", "NO_ORIGIN", "policies/acme", 7, false, "ENFORCE")},
		},
		{
			name: "no policy governs the host",
			req:  authzHeaderReq("GET", "unknown.example.com", map[string]string{"origin": app}),
			want: authzSummary{Code: codes.OK, Meta: meta("ACTUAL", "NO_POLICY", "", 0, false, "ENFORCE")},
		},
		{
			name: "any origin without credentials",
			req:  authzHeaderReq("GET", "public.example.com", map[string]string{"origin": "https://x.example"}),
			want: authzSummary{Code: codes.OK, Headers: []authzHdr{{"access-control-allow-origin", "*", actOverwrite}, {"access-control-expose-headers", "X-Request-Id", actOverwrite}}, Meta: meta("ACTUAL", "ALLOWED", "policies/public", 3, true, "ENFORCE")},
		},
		{
			name:    "raw header_map with raw_value bytes",
			req:     authzRawReq(":authority", "api.example.com", ":method", "GET", ":path", "/", "origin", app, "cookie", "s=1"),
			want:    authzSummary{Code: codes.OK, Headers: actualAllowed, Meta: acmeAllowed},
			wantReq: policy.Request{Method: "GET", Host: "api.example.com", Origin: app},
		},
		{
			name: "header_map entry with value instead of raw_value",
			req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Host: "api.example.com", HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "origin", Value: app}}},
			}}}},
			want: authzSummary{Code: codes.OK, Headers: actualAllowed, Meta: acmeAllowed},
		},
		{
			name:    "raw preflight request headers in several lines are joined",
			req:     authzRawReq(":authority", "api.example.com", ":method", "OPTIONS", "origin", app, "access-control-request-method", "PUT", "access-control-request-headers", "authorization", "access-control-request-headers", "content-type"),
			want:    authzSummary{Code: codes.PermissionDenied, Denied: 204, Headers: preflightAllowed, Meta: meta("PREFLIGHT", "ALLOWED", "policies/acme", 7, true, "ENFORCE")},
			wantReq: policy.Request{Method: "OPTIONS", Host: "api.example.com", Origin: app, AccessControlRequestMethod: "PUT", AccessControlRequestHeaders: "authorization, content-type"},
		},
		{
			name:    "two Origin values merged by Envoy are malformed",
			req:     authzHeaderReq("GET", "api.example.com", map[string]string{"origin": app + ",https://evil.example.net"}),
			want:    authzSummary{Code: codes.OK, Headers: varyOrigin, Meta: malformed},
			wantReq: policy.Request{Method: "GET", Host: "api.example.com", Origin: app + ",https://evil.example.net"},
		},
		{
			name:    "two raw Origin lines are joined and malformed",
			req:     authzRawReq(":authority", "api.example.com", ":method", "GET", "origin", app, "origin", "https://evil.example.net"),
			want:    authzSummary{Code: codes.OK, Headers: varyOrigin, Meta: malformed},
			wantReq: policy.Request{Method: "GET", Host: "api.example.com", Origin: app + ", https://evil.example.net"},
		},
		{
			name:    "keys differing only in case are joined in key order",
			req:     authzHeaderReq("GET", "api.example.com", map[string]string{"origin": app, "Origin": "https://evil.example.net"}),
			want:    authzSummary{Code: codes.OK, Headers: varyOrigin, Meta: malformed},
			wantReq: policy.Request{Method: "GET", Host: "api.example.com", Origin: "https://evil.example.net, " + app},
		},
		{
			name: "upper-case keys are matched",
			req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Headers: map[string]string{":METHOD": "GET", "Host": "api.example.com", "ORIGIN": app},
			}}}},
			want:    authzSummary{Code: codes.OK, Headers: actualAllowed, Meta: acmeAllowed},
			wantReq: policy.Request{Method: "GET", Host: "api.example.com", Origin: app},
		},
		{
			name:     "context extension names the policy by id",
			req:      withExtensions(authzHeaderReq("GET", "unknown.example.com", map[string]string{"origin": app}), map[string]string{"corsd_policy": "acme"}),
			want:     authzSummary{Code: codes.OK, Headers: actualAllowed, Meta: acmeAllowed},
			wantName: "policies/acme",
		},
		{
			name:     "context extension names the policy by resource name",
			req:      withExtensions(authzHeaderReq("GET", "public.example.com", map[string]string{"origin": app}), map[string]string{"corsd_policy": "policies/acme", "other": "x"}),
			want:     authzSummary{Code: codes.OK, Headers: actualAllowed, Meta: acmeAllowed},
			wantName: "policies/acme",
		},
		{
			name:     "context extension naming no policy",
			req:      withExtensions(authzHeaderReq("GET", "api.example.com", map[string]string{"origin": app}), map[string]string{"corsd_policy": "nope"}),
			want:     authzSummary{Code: codes.OK, Meta: meta("ACTUAL", "NO_POLICY", "", 0, false, "ENFORCE")},
			wantName: "policies/nope",
		},
		{
			name:    "host with port",
			req:     authzHeaderReq("GET", "api.example.com:8443", map[string]string{"origin": app}),
			want:    authzSummary{Code: codes.OK, Headers: actualAllowed, Meta: acmeAllowed},
			wantReq: policy.Request{Method: "GET", Host: "api.example.com:8443", Origin: app},
		},
		{
			name: "http.host wins over :authority",
			req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Host: "api.example.com", Headers: map[string]string{":authority": "public.example.com", "origin": app},
			}}}},
			want: authzSummary{Code: codes.OK, Headers: actualAllowed, Meta: acmeAllowed},
		},
		{
			name: ":authority wins over a host header",
			req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Headers: map[string]string{":method": "GET", ":authority": "api.example.com", "host": "public.example.com", "origin": app},
			}}}},
			want: authzSummary{Code: codes.OK, Headers: actualAllowed, Meta: acmeAllowed},
		},
		{
			name: "http.method wins over :method",
			req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Host: "api.example.com", Headers: map[string]string{":method": "OPTIONS", "origin": app, "access-control-request-method": "PUT"},
			}}}},
			want: authzSummary{Code: codes.OK, Headers: actualAllowed, Meta: acmeAllowed},
		},
		{
			name: "allowed_headers without pseudo-headers: method and host attributes suffice",
			req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Host: "api.example.com", Headers: map[string]string{"origin": app},
			}}}},
			want: authzSummary{Code: codes.OK, Headers: actualAllowed, Meta: acmeAllowed},
		},
		{
			name: "CORS headers in the request are never copied to the response",
			req: authzHeaderReq("GET", "api.example.com", map[string]string{
				"origin": "https://evil.example.net", "access-control-allow-origin": "https://evil.example.net", "access-control-allow-credentials": "true", "vary": "*",
			}),
			want: authzSummary{Code: codes.OK, Headers: varyOrigin, Meta: meta("ACTUAL", "ORIGIN_NOT_ALLOWED", "policies/acme", 7, false, "ENFORCE")},
		},
		{
			name: "cross-origin protection refuses a cross-site POST: 403, Vary, a sentence",
			req:  authzHeaderReq("POST", "guarded.example.com", map[string]string{"origin": "https://evil.example.net", "sec-fetch-site": "cross-site"}),
			want: authzSummary{
				Code: codes.PermissionDenied, Denied: 403, Headers: append([]authzHdr{{"content-type", "text/plain; charset=utf-8", actOverwrite}}, varyOrigin...),
				Body: "cross-origin request refused by policies/guarded: the origin is not trusted\n",
				Meta: meta("ACTUAL", "CROSS_ORIGIN_REFUSED", "policies/guarded", 4, false, "ENFORCE"),
			},
		},
		{
			name: "cross-origin protection lets a trusted origin through",
			req:  authzHeaderReq("POST", "guarded.example.com", map[string]string{"origin": app, "sec-fetch-site": "cross-site"}),
			want: authzSummary{Code: codes.OK, Headers: actualAllowed, Meta: meta("ACTUAL", "ALLOWED", "policies/guarded", 4, true, "ENFORCE")},
		},
		{
			name: "report-only refusal changes nothing but is recorded",
			req:  authzHeaderReq("OPTIONS", "shadow.example.com", map[string]string{"origin": "https://evil.example.net", "access-control-request-method": "PUT"}),
			want: authzSummary{Code: codes.OK, Meta: meta("PREFLIGHT", "ORIGIN_NOT_ALLOWED", "policies/shadow", 5, false, "REPORT_ONLY")},
		},
		{
			name: "report-only allowed request adds no headers",
			req:  authzHeaderReq("GET", "shadow.example.com", map[string]string{"origin": app}),
			want: authzSummary{Code: codes.OK, Meta: meta("ACTUAL", "ALLOWED", "policies/shadow", 5, true, "REPORT_ONLY")},
		},
		{
			name: "disabled policy passes untouched",
			req:  authzHeaderReq("OPTIONS", "off.example.com", map[string]string{"origin": app, "access-control-request-method": "PUT"}),
			want: authzSummary{Code: codes.OK, Meta: meta("NOT_CORS", "POLICY_DISABLED", "policies/off", 6, false, "DISABLED")},
		},
		{
			name: "nil request",
			req:  nil,
			want: authzSummary{Code: codes.OK, Meta: meta("NOT_CORS", "NO_POLICY", "", 0, false, "ENFORCE")},
		},
		{
			name: "empty attributes",
			req:  &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}},
			want: authzSummary{Code: codes.OK, Meta: meta("NOT_CORS", "NO_POLICY", "", 0, false, "ENFORCE")},
		},
		{
			name: "empty header values count as absent",
			req:  authzRawReq(":authority", "api.example.com", ":method", "GET", "origin", "", "origin", app),
			want: authzSummary{Code: codes.OK, Headers: actualAllowed, Meta: acmeAllowed},
		},
	}
	d := newExtauthzDecider(t)
	srv := newAuthzServer(d)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := srv.Check(context.Background(), tt.req)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if diff := cmp.Diff(tt.want, summarize(t, resp)); diff != "" {
				t.Errorf("Check(%v) mismatch (-want +got):\n%s", tt.req, diff)
			}
			name, r := d.last()
			if name != tt.wantName {
				t.Errorf("decider asked for policy %q, want %q", name, tt.wantName)
			}
			if tt.wantReq != (policy.Request{}) && r != tt.wantReq {
				t.Errorf("decider got request %+v, want %+v", r, tt.wantReq)
			}
		})
	}
}

func TestExtAuthzCheckUnavailable(t *testing.T) {
	d := newExtauthzDecider(t)
	d.unavailable = true
	resp, err := newAuthzServer(d).Check(context.Background(), authzHeaderReq("GET", "api.example.com", map[string]string{"origin": "https://app.example.com"}))
	if status.Code(err) != codes.Unavailable || resp != nil {
		t.Fatalf("Check = %v, %v; want no response and an Unavailable error", resp, err)
	}
}

// extauthzTestdata are the repository's CheckRequests (testdata/extauthz), as Envoy sends them.
var extauthzTestdata = []string{"preflight", "allowed", "disallowed"}

func loadExtauthzRequest(tb testing.TB, name string) *authv3.CheckRequest {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "extauthz", name+".json"))
	if err != nil {
		tb.Fatalf("read testdata: %v", err)
	}
	req := &authv3.CheckRequest{}
	if err := protojson.Unmarshal(b, req); err != nil {
		tb.Fatalf("protojson.Unmarshal(%s): %v", name, err)
	}
	return req
}

// stableJSON renders m as indented JSON that does not change between runs
// (protojson adds random spaces on purpose).
func stableJSON(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := protojson.MarshalOptions{Multiline: true, UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatalf("protojson.Marshal: %v", err)
	}
	var compact, out bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		t.Fatal(err)
	}
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

func TestExtAuthzGolden(t *testing.T) {
	p, err := policy.Compile(extauthzGoldenConfig())
	if err != nil {
		t.Fatal(err)
	}
	d := &extauthzDecider{byName: map[string]*policy.Policy{}, byHost: map[string]*policy.Policy{"api.example.com": p}}
	srv := newAuthzServer(d)
	for _, name := range extauthzTestdata {
		t.Run(name, func(t *testing.T) {
			resp, err := srv.Check(context.Background(), loadExtauthzRequest(t, name))
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			checkAuthzInvariants(t, resp)
			got := stableJSON(t, resp)
			path := filepath.Join("testdata", "extauthz", name+".golden")
			if *extauthzUpdate {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update to create it): %v", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("Check(%s) mismatch (-want +got):\n%s", name, diff)
			}
		})
	}
}

// TestExtAuthzRequestAllocs holds the conversion to its promise: no
// allocation unless a field must be joined.
func TestExtAuthzRequestAllocs(t *testing.T) {
	reqs := map[string]*authv3.CheckRequest{
		"raw header_map":        authzRawReq(":authority", "api.example.com", ":method", "OPTIONS", "origin", "https://app.example.com", "access-control-request-method", "PUT"),
		"policies/ extension":   withExtensions(authzHeaderReq("GET", "api.example.com", map[string]string{"origin": "https://app.example.com"}), map[string]string{"corsd_policy": "policies/acme"}),
		"upper-case header key": authzHeaderReq("GET", "api.example.com", map[string]string{"ORIGIN": "https://app.example.com"}),
	}
	for _, name := range extauthzTestdata {
		reqs[name] = loadExtauthzRequest(t, name)
	}
	for name, req := range reqs {
		if n := testing.AllocsPerRun(100, func() { authzRequest(req) }); n != 0 {
			t.Errorf("authzRequest(%s) allocates %v times, want 0", name, n)
		}
	}
}

func BenchmarkExtAuthzRequest(b *testing.B) {
	for _, name := range extauthzTestdata {
		req := loadExtauthzRequest(b, name)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				authzRequest(req)
			}
		})
	}
}

func BenchmarkExtAuthzCheck(b *testing.B) {
	srv := newAuthzServer(newExtauthzDecider(b))
	ctx := context.Background()
	for _, name := range extauthzTestdata {
		req := loadExtauthzRequest(b, name)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := srv.Check(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzCheckRequest feeds Check random headers, header_map entries and
// context extensions, the way a misbehaving or hostile front proxy could.
func FuzzCheckRequest(f *testing.F) {
	f.Add("OPTIONS", "api.example.com", "https://app.example.com", "PUT", "content-type", "", "", false, uint8(0))
	f.Add("GET", "api.example.com:8443", "https://app.example.com", "", "", "https://evil.example", "acme", true, uint8(1))
	f.Add("POST", "guarded.example.com", "https://evil.example", "", "", "", "policies/guarded", false, uint8(2))
	f.Add("GET", "public.example.com", "null", "", "", "", "", true, uint8(3))
	f.Add("OPTIONS", "shadow.example.com", "https://app.example.com", "PUT", "x-a,,x-b", "", "", false, uint8(4))
	f.Add("", "", "", "", "", "", "", false, uint8(255))
	f.Add("OPTIONS", "public.example.com", "https://\xff.example", "\x00", "\xfe", "https://a.example,https://b.example", "pub\x00lic", true, uint8(5))
	srv := newAuthzServer(newExtauthzDecider(f))
	f.Fuzz(func(t *testing.T, method, host, origin, acrm, acrh, origin2, ext string, raw bool, shape uint8) {
		key := func(k string, bit uint8) string {
			if shape&bit != 0 {
				return strings.ToUpper(k)
			}
			return k
		}
		kv := []string{
			key(":method", 1), method, key(":authority", 2), host, key("origin", 4), origin,
			key("access-control-request-method", 8), acrm, key("access-control-request-headers", 16), acrh,
			"sec-fetch-site", "cross-site",
		}
		if origin2 != "" {
			kv = append(kv, key("Origin", 32), origin2)
		}
		var req *authv3.CheckRequest
		if raw {
			req = authzRawReq(kv...)
		} else {
			h := map[string]string{}
			for i := 0; i+1 < len(kv); i += 2 {
				h[kv[i]] = kv[i+1] // a repeated key keeps its last value, as a map does
			}
			hr := &authv3.AttributeContext_HttpRequest{Headers: h}
			if shape&64 != 0 {
				hr.Method, hr.Host = method, host
			}
			req = &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: hr}}}
		}
		if ext != "" {
			req.Attributes.ContextExtensions = map[string]string{authzPolicyKey: ext}
		}
		first, err := srv.Check(context.Background(), req)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		checkAuthzInvariants(t, first)
		again, err := srv.Check(context.Background(), req)
		if err != nil {
			t.Fatalf("Check again: %v", err)
		}
		if !proto.Equal(first, again) {
			t.Errorf("Check is not deterministic:\n%v\n%v", first, again)
		}
	})
}
