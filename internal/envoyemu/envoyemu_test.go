package envoyemu

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// clientFunc plays the authorization service (Envoy's peer), scripted per test.
type clientFunc func(ctx context.Context, in *authv3.CheckRequest) (*authv3.CheckResponse, error)

func (f clientFunc) Check(ctx context.Context, in *authv3.CheckRequest, _ ...grpc.CallOption) (*authv3.CheckResponse, error) {
	return f(ctx, in)
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func prefix(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
}

func hvo(key, value string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: value}, AppendAction: action}
}

const (
	overwrite   = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	appendOrAdd = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
)

func TestCheckRequest(t *testing.T) {
	tests := []struct {
		name        string
		cfg         Config
		method      string
		target      string
		header      http.Header
		wantHeaders map[string]string     // nil: expect no headers map
		wantRaw     []*corev3.HeaderValue // expected header_map entries (nil: none)
		wantExt     map[string]string     // context_extensions
		check       func(*testing.T, *authv3.AttributeContext_HttpRequest)
	}{
		{
			name:   "pseudo-headers, lower-case keys, host with port",
			method: http.MethodGet,
			target: "http://api.example.com:8443/v1/items?q=1",
			header: http.Header{"Origin": {"https://app.example.com"}, "X-Custom": {"v"}, "Connection": {"keep-alive"}},
			wantHeaders: map[string]string{
				":authority": "api.example.com:8443", ":path": "/v1/items?q=1", ":method": "GET", ":scheme": "http",
				"origin": "https://app.example.com", "x-custom": "v", "x-forwarded-proto": "http", "x-request-id": "00000000-0000-4000-8000-000000000001",
			},
			check: func(t *testing.T, hr *authv3.AttributeContext_HttpRequest) {
				got := [...]string{hr.GetMethod(), hr.GetHost(), hr.GetPath(), hr.GetScheme(), hr.GetProtocol(), hr.GetId()}
				want := [...]string{"GET", "api.example.com:8443", "/v1/items?q=1", "http", "HTTP/1.1", "1"}
				if got != want {
					t.Errorf("http attributes = %q, want %q", got, want)
				}
			},
		},
		{
			name:   "repeated headers joined with a comma",
			method: http.MethodOptions,
			target: "http://api.example.com/",
			header: http.Header{"Origin": {"https://a.example", "https://b.example"}, "X-Request-Id": {"r1"}, "X-Forwarded-Proto": {"https"}},
			wantHeaders: map[string]string{
				":authority": "api.example.com", ":path": "/", ":method": "OPTIONS", ":scheme": "http",
				"origin": "https://a.example,https://b.example", "x-request-id": "r1", "x-forwarded-proto": "https",
			},
		},
		{
			name:   "raw headers keep each field line",
			cfg:    Config{ExtAuthz: &extauthzv3.ExtAuthz{EncodeRawHeaders: true, AllowedHeaders: &matcherv3.ListStringMatcher{Patterns: []*matcherv3.StringMatcher{exact("origin"), exact(":authority")}}}},
			method: http.MethodGet,
			target: "http://api.example.com/",
			header: http.Header{"Origin": {"https://a.example", "https://b.example"}, "Cookie": {"secret"}},
			wantRaw: []*corev3.HeaderValue{
				{Key: ":authority", RawValue: []byte("api.example.com")},
				{Key: "origin", RawValue: []byte("https://a.example")},
				{Key: "origin", RawValue: []byte("https://b.example")},
			},
		},
		{
			name: "allowed headers limit what is sent; method and host still set",
			cfg: Config{ExtAuthz: &extauthzv3.ExtAuthz{
				AllowedHeaders:    &matcherv3.ListStringMatcher{Patterns: []*matcherv3.StringMatcher{exact("origin"), prefix("access-control-request-"), {MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "SEC-FETCH-SITE"}, IgnoreCase: true}}},
				DisallowedHeaders: &matcherv3.ListStringMatcher{Patterns: []*matcherv3.StringMatcher{exact("access-control-request-private-network")}},
			}},
			method: http.MethodOptions,
			target: "http://api.example.com/x",
			header: http.Header{
				"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"PUT"}, "Sec-Fetch-Site": {"cross-site"},
				"Access-Control-Request-Private-Network": {"true"}, "Authorization": {"Bearer t"}, "Cookie": {"s=1"},
			},
			wantHeaders: map[string]string{"origin": "https://app.example.com", "access-control-request-method": "PUT", "sec-fetch-site": "cross-site"},
			check: func(t *testing.T, hr *authv3.AttributeContext_HttpRequest) {
				if hr.GetMethod() != "OPTIONS" || hr.GetHost() != "api.example.com" {
					t.Errorf("method, host = %q, %q; want OPTIONS, api.example.com", hr.GetMethod(), hr.GetHost())
				}
			},
		},
		{
			name:        "invalid UTF-8 sanitized",
			cfg:         Config{ExtAuthz: &extauthzv3.ExtAuthz{AllowedHeaders: &matcherv3.ListStringMatcher{Patterns: []*matcherv3.StringMatcher{exact("origin")}}}},
			method:      http.MethodGet,
			target:      "http://api.example.com/",
			header:      http.Header{"Origin": {"https://\xffa.example"}},
			wantHeaders: map[string]string{"origin": "https://!a.example"},
		},
		{
			name: "context extensions of the route",
			cfg: Config{
				ExtAuthz: &extauthzv3.ExtAuthz{AllowedHeaders: &matcherv3.ListStringMatcher{Patterns: []*matcherv3.StringMatcher{exact("origin")}}},
				ContextExtensions: func(r *http.Request) map[string]string {
					return map[string]string{"corsd_policy": "acme", "path": r.URL.Path}
				},
			},
			method:      http.MethodGet,
			target:      "http://api.example.com/p",
			wantHeaders: map[string]string{},
			wantExt:     map[string]string{"corsd_policy": "acme", "path": "/p"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := New(clientFunc(func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) { return nil, nil }), http.NotFoundHandler(), tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(tt.method, tt.target, nil)
			for k, vs := range tt.header {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			req := f.CheckRequest(r)
			hr := req.GetAttributes().GetRequest().GetHttp()
			if tt.wantRaw == nil {
				if diff := cmp.Diff(tt.wantHeaders, hr.GetHeaders()); diff != "" {
					t.Errorf("headers mismatch (-want +got):\n%s", diff)
				}
				if hr.GetHeaderMap() != nil {
					t.Errorf("header_map set without encode_raw_headers")
				}
			} else {
				if hr.GetHeaders() != nil {
					t.Errorf("headers set with encode_raw_headers: %v", hr.GetHeaders())
				}
				var got []string
				for _, h := range hr.GetHeaderMap().GetHeaders() {
					if h.GetValue() != "" {
						t.Errorf("header_map entry %q has value; Envoy sets only raw_value", h.GetKey())
					}
					got = append(got, h.GetKey()+"="+string(h.GetRawValue()))
				}
				var want []string
				for _, h := range tt.wantRaw {
					want = append(want, h.GetKey()+"="+string(h.GetRawValue()))
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("header_map mismatch (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(tt.wantExt, req.GetAttributes().GetContextExtensions()); diff != "" {
				t.Errorf("context_extensions mismatch (-want +got):\n%s", diff)
			}
			if a := req.GetAttributes().GetSource().GetAddress().GetSocketAddress(); a.GetAddress() != "192.0.2.1" || a.GetPortValue() != 1234 {
				t.Errorf("source address = %v, want 192.0.2.1:1234", a)
			}
			if tt.check != nil {
				tt.check(t, hr)
			}
		})
	}
}

func TestServeHTTP(t *testing.T) {
	denied := func(code int32, body string, hs ...*corev3.HeaderValueOption) *authv3.CheckResponse {
		d := &authv3.DeniedHttpResponse{Headers: hs, Body: body}
		if code != 0 {
			d.Status = &typev3.HttpStatus{Code: typev3.StatusCode(code)}
		}
		return &authv3.CheckResponse{
			Status:       &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: d},
		}
	}
	ok := func(o *authv3.OkHttpResponse) *authv3.CheckResponse {
		return &authv3.CheckResponse{
			Status:          &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: o},
			DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{"k": structpb.NewStringValue("v")}},
		}
	}
	// upstream answers with its own CORS headers and Vary, and echoes some
	// request headers so the test sees what reached it.
	upstream := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "https://upstream.example")
		w.Header().Add("Vary", "Accept-Encoding")
		w.Header().Add("Vary", "Cookie")
		w.Header().Add("X-Multi", "a")
		w.Header().Set("X-Present", "upstream")
		w.Header().Set("Echo-User", r.Header.Get("X-User"))
		w.Header().Set("Echo-Tag", strings.Join(r.Header.Values("X-Tag"), "|"))
		w.Header().Set("Echo-Auth", r.Header.Get("Authorization"))
		w.Header().Set("Echo-Failure-Mode", r.Header.Get("X-Envoy-Auth-Failure-Mode-Allowed"))
		w.Header().Set("Echo-Host", r.Host)
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "upstream body")
	}
	tests := []struct {
		name         string
		cfg          *extauthzv3.ExtAuthz
		resp         *authv3.CheckResponse
		err          error
		block        bool // the service never answers
		wantStatus   int
		wantHeader   http.Header // every listed header must equal exactly
		wantBody     string
		wantResult   Result
		wantUpstream bool
		wantMeta     bool
	}{
		{
			name:       "denied with 204 is a local reply carrying the headers",
			resp:       denied(204, "", hvo("access-control-allow-origin", "https://app.example.com", overwrite), hvo("vary", "Origin, Access-Control-Request-Method", appendOrAdd)),
			wantStatus: 204,
			wantHeader: http.Header{"Access-Control-Allow-Origin": {"https://app.example.com"}, "Vary": {"Origin, Access-Control-Request-Method"}, "Content-Type": nil},
			wantResult: ResultDenied,
		},
		{
			name:       "denied without an HTTP status is 403, body is text/plain",
			resp:       denied(0, "refused\n", hvo("vary", "Origin", appendOrAdd)),
			wantStatus: 403,
			wantHeader: http.Header{"Vary": {"Origin"}, "Content-Type": {"text/plain"}},
			wantBody:   "refused\n",
			wantResult: ResultDenied,
		},
		{
			name:         "absent status allows",
			resp:         &authv3.CheckResponse{},
			wantStatus:   202,
			wantHeader:   http.Header{"Access-Control-Allow-Origin": {"https://upstream.example"}, "Vary": {"Accept-Encoding,Cookie"}},
			wantBody:     "upstream body",
			wantResult:   ResultOK,
			wantUpstream: true,
		},
		{
			name: "ok: overwrite replaces the upstream's header, Vary appended to its line",
			resp: ok(&authv3.OkHttpResponse{ResponseHeadersToAdd: []*corev3.HeaderValueOption{
				hvo("access-control-allow-origin", "https://app.example.com", overwrite),
				hvo("access-control-allow-credentials", "true", overwrite),
				hvo("vary", "Origin", appendOrAdd),
			}}),
			wantStatus:   202,
			wantHeader:   http.Header{"Access-Control-Allow-Origin": {"https://app.example.com"}, "Access-Control-Allow-Credentials": {"true"}, "Vary": {"Accept-Encoding,Cookie,Origin"}},
			wantBody:     "upstream body",
			wantResult:   ResultOK,
			wantUpstream: true,
			wantMeta:     true,
		},
		{
			name:         "ok: the default append action comma-joins an inline CORS header",
			resp:         ok(&authv3.OkHttpResponse{ResponseHeadersToAdd: []*corev3.HeaderValueOption{hvo("access-control-allow-origin", "https://app.example.com", appendOrAdd)}}),
			wantStatus:   202,
			wantHeader:   http.Header{"Access-Control-Allow-Origin": {"https://upstream.example,https://app.example.com"}},
			wantBody:     "upstream body",
			wantResult:   ResultOK,
			wantUpstream: true,
			wantMeta:     true,
		},
		{
			name: "ok: append to a regular header adds a line; add-if-absent and overwrite-if-exists",
			resp: ok(&authv3.OkHttpResponse{ResponseHeadersToAdd: []*corev3.HeaderValueOption{
				hvo("x-multi", "b", appendOrAdd),
				hvo("x-present", "authz", corev3.HeaderValueOption_ADD_IF_ABSENT),
				hvo("x-absent", "authz", corev3.HeaderValueOption_ADD_IF_ABSENT),
				hvo("x-present-2", "authz", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
				{Header: &corev3.HeaderValue{Key: "x-deprecated", Value: "d"}, Append: wrapperspb.Bool(false)},
			}}),
			wantStatus:   202,
			wantHeader:   http.Header{"X-Multi": {"a", "b"}, "X-Present": {"upstream"}, "X-Absent": {"authz"}, "X-Present-2": nil, "X-Deprecated": {"d"}},
			wantBody:     "upstream body",
			wantResult:   ResultOK,
			wantUpstream: true,
			wantMeta:     true,
		},
		{
			name: "ok: request header mutations reach the upstream; pseudo-headers and host are not removed",
			resp: ok(&authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{
					hvo("x-user", "u1", overwrite),
					hvo("x-tag", "t2", appendOrAdd),
					{Header: &corev3.HeaderValue{Key: "x-tag", Value: "t3"}, Append: wrapperspb.Bool(true)},
				},
				HeadersToRemove: []string{"authorization", ":path", "host"},
			}),
			wantStatus:   202,
			wantHeader:   http.Header{"Echo-User": {"u1"}, "Echo-Tag": {"t1,t3|t2"}, "Echo-Auth": {""}, "Echo-Host": {"api.example.com"}},
			wantBody:     "upstream body",
			wantResult:   ResultOK,
			wantUpstream: true,
			wantMeta:     true,
		},
		{
			name:       "gRPC error fails closed with 403 by default",
			err:        status.Error(codes.Unavailable, "not loaded"),
			wantStatus: 403,
			wantResult: ResultError,
		},
		{
			name:       "gRPC error with status_on_error",
			cfg:        &extauthzv3.ExtAuthz{StatusOnError: &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}},
			err:        status.Error(codes.Unavailable, "not loaded"),
			wantStatus: 503,
			wantResult: ResultError,
		},
		{
			name:         "gRPC error with failure_mode_allow passes and marks the request",
			cfg:          &extauthzv3.ExtAuthz{FailureModeAllow: true, FailureModeAllowHeaderAdd: true},
			err:          status.Error(codes.Unavailable, "not loaded"),
			wantStatus:   202,
			wantHeader:   http.Header{"Echo-Failure-Mode": {"true"}, "Access-Control-Allow-Origin": {"https://upstream.example"}},
			wantBody:     "upstream body",
			wantResult:   ResultFailureModeAllowed,
			wantUpstream: true,
		},
		{
			name: "error_response counts as an error",
			resp: &authv3.CheckResponse{
				Status:       &rpcstatus.Status{Code: int32(codes.Internal)},
				HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{Body: "boom"}},
			},
			wantStatus: 403,
			wantResult: ResultError,
		},
		{
			name:       "timeout is an error",
			cfg:        &extauthzv3.ExtAuthz{Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{Timeout: durationpb.New(20 * time.Millisecond)}}},
			block:      true,
			wantStatus: 403,
			wantResult: ResultError,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstreamCalls := 0
			client := clientFunc(func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
				if tt.block {
					<-ctx.Done()
					return nil, status.FromContextError(ctx.Err()).Err()
				}
				return tt.resp, tt.err
			})
			var entries []Entry
			f, err := New(client, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				upstreamCalls++
				upstream(w, r)
			}), Config{ExtAuthz: tt.cfg, Log: func(e Entry) { entries = append(entries, e) }})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodGet, "http://api.example.com/", nil)
			r.Header.Set("Origin", "https://app.example.com")
			r.Header.Set("Authorization", "Bearer t")
			r.Header.Set("X-Tag", "t1")
			w := httptest.NewRecorder()
			f.ServeHTTP(w, r)

			res := w.Result()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", res.StatusCode, tt.wantStatus)
			}
			for k, want := range tt.wantHeader {
				if got := res.Header.Values(k); !cmp.Equal(want, got) && (len(want) != 0 || len(got) != 0) {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			if string(body) != tt.wantBody {
				t.Errorf("body = %q, want %q", body, tt.wantBody)
			}
			if (upstreamCalls == 1) != tt.wantUpstream || upstreamCalls > 1 {
				t.Errorf("upstream called %d times, want called = %v", upstreamCalls, tt.wantUpstream)
			}
			if len(entries) != 1 {
				t.Fatalf("logged %d entries, want 1", len(entries))
			}
			e := entries[0]
			if e.Result != tt.wantResult || e.Status != tt.wantStatus || e.UpstreamCalled != tt.wantUpstream {
				t.Errorf("entry = %+v, want result %s, status %d, upstream %v", e, tt.wantResult, tt.wantStatus, tt.wantUpstream)
			}
			if got := e.DynamicMetadata.GetFields()["k"].GetStringValue() == "v"; got != tt.wantMeta {
				t.Errorf("dynamic metadata = %v, want present = %v", e.DynamicMetadata, tt.wantMeta)
			}
			if tt.wantMeta && e.DynamicMetadata.GetFields()["ext_authz_duration"] == nil {
				t.Errorf("dynamic metadata lacks ext_authz_duration on OK: %v", e.DynamicMetadata)
			}
		})
	}
}

func TestNewRefusesWhatItDoesNotModel(t *testing.T) {
	noop := clientFunc(func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return nil, errors.New("unused")
	})
	tests := []struct {
		name string
		cfg  *extauthzv3.ExtAuthz
	}{
		{name: "http service", cfg: &extauthzv3.ExtAuthz{Services: &extauthzv3.ExtAuthz_HttpService{HttpService: &extauthzv3.HttpService{}}}},
		{name: "request body", cfg: &extauthzv3.ExtAuthz{WithRequestBody: &extauthzv3.BufferSettings{}}},
		{name: "bad regex", cfg: &extauthzv3.ExtAuthz{AllowedHeaders: &matcherv3.ListStringMatcher{Patterns: []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "("}}}}}}},
		{name: "empty prefix", cfg: &extauthzv3.ExtAuthz{AllowedHeaders: &matcherv3.ListStringMatcher{Patterns: []*matcherv3.StringMatcher{prefix("")}}}},
		{name: "bad status on error", cfg: &extauthzv3.ExtAuthz{StatusOnError: &typev3.HttpStatus{Code: 42}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(noop, http.NotFoundHandler(), Config{ExtAuthz: tt.cfg}); err == nil {
				t.Errorf("New(%v) succeeded, want an error", tt.cfg)
			}
		})
	}
}
