// Package envoyemu emulates, inside tests, Envoy's HTTP filter
// envoy.filters.http.ext_authz talking to a gRPC (v3) authorization service.
// CI has no Envoy binary, so end-to-end tests put a Filter in front of an
// upstream handler and drive it with ordinary HTTP requests: the Filter turns
// each request into the CheckRequest Envoy would send, calls Check, and then
// answers locally (denied), forwards to the upstream with the mutations
// applied (OK), or applies failure_mode_allow / status_on_error (error).
//
// The behaviour follows Envoy's ext_authz filter (v1.3x): header collection
// in check_request_utils.cc, the response handling in ext_authz_grpc_impl.cc
// and ext_authz.cc, and the header map semantics of header_map_impl.cc.
//
// Modeled:
//   - CheckRequest: lower-case header keys; the pseudo-headers :authority,
//     :path, :method and :scheme (an HTTP/1 Host header becomes :authority);
//     hop-by-hop headers dropped and x-forwarded-proto / x-request-id added as
//     the connection manager does; repeated headers joined with "," (no
//     space) unless encode_raw_headers, which sends header_map with one
//     raw_value entry per field line; values that are not UTF-8 sanitized
//     with "!"; allowed_headers / disallowed_headers (exact, prefix, suffix,
//     contains, safe_regex, ignore_case); http.method, http.host (with its
//     port), http.path, http.scheme, http.protocol, http.id; source and
//     destination socket addresses; per-route context_extensions.
//   - Check with the grpc_service timeout (200 ms when unset).
//   - A status of OK (or no status at all) allows; any other status denies,
//     unless error_response is set, which counts as an error.
//   - Denied: a local reply with denied_response's status (403 when unset),
//     its body (text/plain) and its headers; the upstream is not called.
//   - OK: ok_response.headers applied to the upstream request per
//     append_action (or the deprecated append flag), headers_to_remove (never
//     pseudo-headers or Host); response_headers_to_add applied to the
//     upstream's response headers, in order, per append_action:
//     OVERWRITE_IF_EXISTS_OR_ADD replaces, APPEND_IF_EXISTS_OR_ADD adds,
//     ADD_IF_ABSENT and OVERWRITE_IF_EXISTS as named. Adding to an inline
//     header (Vary, the Access-Control-* headers, Cache-Control, ...) that
//     already exists appends to its single line with ",", as Envoy's header
//     map does for the headers that the compressor, cache and CORS filters
//     register as inline in standard builds; other headers get a new line.
//   - Error (gRPC error, timeout, error_response): failure_mode_allow passes
//     the request on (adding x-envoy-auth-failure-mode-allowed: true when
//     failure_mode_allow_header_add is set); otherwise status_on_error (403
//     when unset) with an empty body.
//   - Dynamic metadata (CheckResponse.dynamic_metadata, or the deprecated
//     ok_response.dynamic_metadata, which overrides it), plus
//     ext_authz_duration on OK, reported through Config.Log.
//
// Not modeled: the HTTP authorization service, request body buffering,
// query parameter mutations, route cache clearing, validate_mutations and
// decoder_header_mutation_rules, stats, per-route disabling, metadata
// context namespaces, TLS session and peer certificate attributes,
// allow_debugging_failures, and response headers mutated after the upstream
// starts writing its body (1xx responses, trailers).
package envoyemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// defaultTimeout is Envoy's ext_authz gRPC timeout when grpc_service.timeout
// is unset.
const defaultTimeout = 200 * time.Millisecond

// Result is the outcome of one authorization, as Envoy's stats name it.
type Result string

// Results.
const (
	ResultOK                 Result = "ok"
	ResultDenied             Result = "denied"
	ResultError              Result = "error"
	ResultFailureModeAllowed Result = "failure_mode_allowed"
)

// Entry is what an access log would record about one request.
type Entry struct {
	// Result of the authorization.
	Result Result
	// GRPCCode is the gRPC status of the Check call (its error, or the
	// CheckResponse's status).
	GRPCCode codes.Code
	// Status is the HTTP status sent to the client (the upstream's when the
	// request was passed on).
	Status int
	// UpstreamCalled reports whether the request reached the upstream.
	UpstreamCalled bool
	// DynamicMetadata is what Envoy stores under the
	// envoy.filters.http.ext_authz namespace; nil when empty.
	DynamicMetadata *structpb.Struct
}

// Config configures a Filter.
type Config struct {
	// ExtAuthz is the filter's configuration, as in Envoy. Nil means the
	// defaults. The fields the emulator honours are listed in the package
	// documentation; http_service and with_request_body are refused.
	ExtAuthz *extauthzv3.ExtAuthz
	// ContextExtensions returns the route's check_settings.context_extensions
	// (already merged from virtual host to route) for r. Nil: none.
	ContextExtensions func(r *http.Request) map[string]string
	// Log, when set, receives one Entry per request after it is answered.
	// It is called from the serving goroutine.
	Log func(Entry)
}

// Filter is an http.Handler that emulates Envoy's ext_authz HTTP filter in
// front of an upstream handler. It is safe for concurrent use.
type Filter struct {
	client     authv3.AuthorizationClient
	upstream   http.Handler
	cfg        *extauthzv3.ExtAuthz
	timeout    time.Duration
	onError    int
	allowed    *listMatcher // nil: every header
	disallowed *listMatcher // nil: none
	extensions func(*http.Request) map[string]string
	log        func(Entry)
	streamID   atomic.Uint64
}

var _ http.Handler = (*Filter)(nil)

// New returns a Filter that authorizes each request with client and passes
// the allowed ones to upstream. It fails when the configuration asks for
// something the emulator does not model or holds an invalid matcher.
func New(client authv3.AuthorizationClient, upstream http.Handler, cfg Config) (*Filter, error) {
	if client == nil || upstream == nil {
		return nil, errors.New("envoyemu: client and upstream are required")
	}
	ea := cfg.ExtAuthz
	if ea == nil {
		ea = &extauthzv3.ExtAuthz{}
	}
	if ea.GetHttpService() != nil {
		return nil, errors.New("envoyemu: http_service is not modeled; use grpc_service")
	}
	if ea.GetWithRequestBody() != nil {
		return nil, errors.New("envoyemu: with_request_body is not modeled")
	}
	f := &Filter{
		client:     client,
		upstream:   upstream,
		cfg:        ea,
		timeout:    defaultTimeout,
		onError:    http.StatusForbidden,
		extensions: cfg.ContextExtensions,
		log:        cfg.Log,
	}
	if t := ea.GetGrpcService().GetTimeout(); t != nil {
		f.timeout = t.AsDuration()
	}
	if c := int(ea.GetStatusOnError().GetCode()); c != 0 {
		if c < 100 || c > 599 {
			return nil, fmt.Errorf("envoyemu: status_on_error %d is not an HTTP status", c)
		}
		f.onError = c
	}
	var err error
	if ea.GetAllowedHeaders() != nil {
		if f.allowed, err = compileList(ea.GetAllowedHeaders()); err != nil {
			return nil, fmt.Errorf("envoyemu: allowed_headers: %w", err)
		}
	}
	if ea.GetDisallowedHeaders() != nil {
		if f.disallowed, err = compileList(ea.GetDisallowedHeaders()); err != nil {
			return nil, fmt.Errorf("envoyemu: disallowed_headers: %w", err)
		}
	}
	return f, nil
}

// ServeHTTP authorizes r, then answers it locally or passes it upstream.
func (f *Filter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req := f.CheckRequest(r)
	ctx, cancel := context.WithTimeout(r.Context(), f.timeout)
	resp, err := f.client.Check(ctx, req)
	cancel()

	entry := Entry{}
	switch {
	case err != nil:
		entry.GRPCCode = status.Code(err)
		f.fail(w, r, &entry)
	case resp.GetStatus().GetCode() == int32(codes.OK):
		entry.Result = ResultOK
		entry.DynamicMetadata = dynamicMetadata(resp, time.Since(start))
		f.pass(w, r, resp.GetOkResponse(), &entry)
	case resp.GetErrorResponse() != nil:
		entry.GRPCCode = grpcCode(resp)
		entry.DynamicMetadata = dynamicMetadata(resp, 0)
		f.fail(w, r, &entry)
	default:
		entry.Result = ResultDenied
		entry.GRPCCode = grpcCode(resp)
		entry.DynamicMetadata = dynamicMetadata(resp, 0)
		denied := resp.GetDeniedResponse()
		code := int(denied.GetStatus().GetCode())
		if code < 100 || code > 599 {
			code = http.StatusForbidden // unset (Envoy's default), or not a status net/http can send
		}
		localReply(w, code, denied.GetBody(), denied.GetHeaders())
		entry.Status = code
	}
	if f.log != nil {
		f.log(entry)
	}
}

// fail applies failure_mode_allow or status_on_error.
func (f *Filter) fail(w http.ResponseWriter, r *http.Request, e *Entry) {
	if !f.cfg.GetFailureModeAllow() {
		e.Result = ResultError
		e.Status = f.onError
		localReply(w, f.onError, "", nil)
		return
	}
	e.Result = ResultFailureModeAllowed
	if f.cfg.GetFailureModeAllowHeaderAdd() {
		r = cloneRequest(r)
		r.Header.Add("X-Envoy-Auth-Failure-Mode-Allowed", "true")
	}
	f.pass(w, r, nil, e)
}

// pass sends r upstream with ok's request mutations and applies ok's
// response mutations to the upstream's response headers.
func (f *Filter) pass(w http.ResponseWriter, r *http.Request, ok *authv3.OkHttpResponse, e *Entry) {
	if len(ok.GetHeaders()) > 0 || len(ok.GetHeadersToRemove()) > 0 {
		r = cloneRequest(r)
		for _, o := range ok.GetHeaders() {
			applyRequestHeader(r, o)
		}
		for _, name := range ok.GetHeadersToRemove() {
			// Envoy refuses to remove pseudo-headers and Host: the request
			// would be malformed.
			if strings.HasPrefix(name, ":") || strings.EqualFold(name, "host") {
				continue
			}
			r.Header.Del(name)
		}
	}
	mw := &mutatingWriter{ResponseWriter: w, mutations: ok.GetResponseHeadersToAdd()}
	f.upstream.ServeHTTP(mw, r)
	if !mw.wroteHeader {
		mw.WriteHeader(http.StatusOK)
	}
	e.UpstreamCalled = true
	e.Status = mw.status
}

// CheckRequest builds the CheckRequest that Envoy would send for r.
func (f *Filter) CheckRequest(r *http.Request) *authv3.CheckRequest {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	// :path is origin-form: Envoy turns an absolute-form target into
	// :authority and :path.
	path := r.URL.RequestURI()
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	id := f.streamID.Add(1)

	// Envoy's header map for the request, in its order: pseudo-headers first
	// (the HTTP/1 codec turns Host into :authority), then the regular headers
	// with lower-case names, each field line its own entry.
	type field struct{ key, value string }
	fields := []field{{":authority", host}, {":path", path}, {":method", r.Method}, {":scheme", scheme}}
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys) // Go's header map has no order; make it deterministic.
	for _, k := range keys {
		lk := strings.ToLower(k)
		if hopByHop(lk) || lk == "host" {
			continue
		}
		for _, v := range r.Header[k] {
			fields = append(fields, field{lk, v})
		}
	}
	// The connection manager adds these before any filter runs.
	if r.Header.Get("X-Forwarded-Proto") == "" {
		fields = append(fields, field{"x-forwarded-proto", scheme})
	}
	if r.Header.Get("X-Request-Id") == "" {
		fields = append(fields, field{"x-request-id", fmt.Sprintf("00000000-0000-4000-8000-%012d", id)})
	}

	hr := &authv3.AttributeContext_HttpRequest{
		Id:       strconv.FormatUint(id, 10),
		Method:   sanitize(r.Method),
		Path:     sanitize(path),
		Host:     sanitize(host),
		Scheme:   scheme,
		Size:     0, // bytes received when the headers were decoded
		Protocol: protocol(r),
	}
	raw := f.cfg.GetEncodeRawHeaders()
	if raw {
		hr.HeaderMap = &corev3.HeaderMap{}
	} else {
		hr.Headers = make(map[string]string, len(fields))
	}
	for _, fl := range fields {
		if fl.key == "x-envoy-auth-partial-body" {
			continue // Envoy drops a client's copy of its internal header
		}
		if f.disallowed != nil && f.disallowed.matches(fl.key) {
			continue
		}
		if f.allowed != nil && !f.allowed.matches(fl.key) {
			continue
		}
		if raw {
			hr.HeaderMap.Headers = append(hr.HeaderMap.Headers, &corev3.HeaderValue{Key: fl.key, RawValue: []byte(fl.value)})
			continue
		}
		v := sanitize(fl.value)
		if prev, ok := hr.Headers[fl.key]; ok {
			v = prev + "," + v
		}
		hr.Headers[fl.key] = v
	}

	attrs := &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socketAddress(r.RemoteAddr)},
		Destination: &authv3.AttributeContext_Peer{Address: localAddress(r)},
		Request:     &authv3.AttributeContext_Request{Time: timestamppb.Now(), Http: hr},
	}
	if f.extensions != nil {
		if ext := f.extensions(r); len(ext) > 0 {
			attrs.ContextExtensions = maps.Clone(ext)
		}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

// grpcCode returns the status code of resp; a negative code (not a gRPC
// code) reads as Unknown.
func grpcCode(resp *authv3.CheckResponse) codes.Code {
	c := resp.GetStatus().GetCode()
	if c < 0 {
		return codes.Unknown
	}
	return codes.Code(c)
}

// hopByHop reports the connection-specific headers Envoy's connection
// manager strips from HTTP/1 requests before the filter chain.
func hopByHop(lk string) bool {
	switch lk {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

func protocol(r *http.Request) string {
	switch r.ProtoMajor {
	case 2:
		return "HTTP/2"
	case 3:
		return "HTTP/3"
	}
	return r.Proto
}

// sanitize replaces invalid UTF-8 with "!", as Envoy does for string fields.
func sanitize(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "!")
}

func socketAddress(hostport string) *corev3.Address {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
	}}}
}

func localAddress(r *http.Request) *corev3.Address {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return nil
	}
	return socketAddress(a.String())
}

func dynamicMetadata(resp *authv3.CheckResponse, okDuration time.Duration) *structpb.Struct {
	md := resp.GetDynamicMetadata()
	if ok := resp.GetOkResponse(); ok.GetDynamicMetadata() != nil { //nolint:staticcheck // Envoy still honours the deprecated field, and it wins.
		md = ok.GetDynamicMetadata() //nolint:staticcheck // see above
	}
	if len(md.GetFields()) == 0 {
		return nil
	}
	md = proto.Clone(md).(*structpb.Struct)
	if okDuration > 0 {
		md.Fields["ext_authz_duration"] = structpb.NewNumberValue(float64(okDuration.Milliseconds()))
	}
	return md
}

// localReply writes a response that Envoy generates itself: status, body
// (text/plain) and the authorization service's headers, each named header
// first removed and then added, as the filter's local reply does.
func localReply(w http.ResponseWriter, code int, body string, headers []*corev3.HeaderValueOption) {
	h := w.Header()
	for _, o := range headers {
		h.Del(o.GetHeader().GetKey())
	}
	for _, o := range headers {
		addHeader(h, o.GetHeader().GetKey(), headerValue(o.GetHeader()))
	}
	if body != "" && h.Get("Content-Type") == "" {
		h.Set("Content-Type", "text/plain")
	}
	if body != "" {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(code)
	if body != "" {
		_, _ = io.WriteString(w, body) // the client went away; nothing to report to
	}
}

func headerValue(hv *corev3.HeaderValue) string {
	if hv.GetValue() != "" {
		return hv.GetValue()
	}
	return string(hv.GetRawValue())
}

// inline lists the response headers that a standard Envoy build keeps as
// inline headers (built in, or registered by the compressor, cache and CORS
// filters). Adding to one of them that exists appends to its single line.
var inline = map[string]bool{
	"Vary":                             true,
	"Cache-Control":                    true,
	"Etag":                             true,
	"Content-Encoding":                 true,
	"Content-Type":                     true,
	"Content-Length":                   true,
	"Date":                             true,
	"Location":                         true,
	"Server":                           true,
	"Via":                              true,
	"Access-Control-Allow-Origin":      true,
	"Access-Control-Allow-Credentials": true,
	"Access-Control-Allow-Methods":     true,
	"Access-Control-Allow-Headers":     true,
	"Access-Control-Expose-Headers":    true,
	"Access-Control-Max-Age":           true,
}

// addHeader is Envoy's addCopy: a new line, except for inline headers that
// already exist, whose single line gets ",value" appended.
func addHeader(h http.Header, key, value string) {
	ck := http.CanonicalHeaderKey(key)
	if old := h[ck]; inline[ck] && len(old) > 0 {
		h[ck] = []string{strings.Join(old, ",") + "," + value}
		return
	}
	h[ck] = append(h[ck], value)
}

// applyHeader applies one HeaderValueOption to h. deprecatedAppendJoins
// selects Envoy's request-side handling of the deprecated append=true flag
// (appendCopy: join to the existing line with ",").
func applyHeader(h http.Header, o *corev3.HeaderValueOption, deprecatedAppendJoins bool) {
	key := o.GetHeader().GetKey()
	value := headerValue(o.GetHeader())
	ck := http.CanonicalHeaderKey(key)
	action := o.GetAppendAction()
	if a := o.GetAppend(); a != nil { //nolint:staticcheck // Envoy still honours the deprecated field, and it wins.
		if !a.GetValue() {
			action = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		} else {
			action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
			if deprecatedAppendJoins && len(h[ck]) > 0 {
				h[ck][0] += "," + value // appendCopy: onto the first line
				return
			}
		}
	}
	_, exists := h[ck]
	switch action {
	case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		addHeader(h, ck, value)
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		if !exists {
			h[ck] = []string{value}
		}
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		if exists {
			h[ck] = []string{value}
		}
	default: // OVERWRITE_IF_EXISTS_OR_ADD, and unknown actions as Envoy treats them
		h[ck] = []string{value}
	}
}

func applyRequestHeader(r *http.Request, o *corev3.HeaderValueOption) {
	if strings.EqualFold(o.GetHeader().GetKey(), "host") || o.GetHeader().GetKey() == ":authority" {
		r.Host = headerValue(o.GetHeader())
		return
	}
	if strings.HasPrefix(o.GetHeader().GetKey(), ":") {
		return // other pseudo-headers are not modeled
	}
	applyHeader(r.Header, o, true)
}

func cloneRequest(r *http.Request) *http.Request {
	r2 := r.Clone(r.Context())
	if r2.Header == nil {
		r2.Header = http.Header{}
	}
	return r2
}

// mutatingWriter applies response_headers_to_add to the upstream's headers
// when it starts its response, as the filter's encodeHeaders does.
type mutatingWriter struct {
	http.ResponseWriter
	mutations   []*corev3.HeaderValueOption
	wroteHeader bool
	status      int
}

func (w *mutatingWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code) // 1xx: not modeled, passed through
		return
	}
	w.wroteHeader = true
	w.status = code
	h := w.Header()
	// The codec merges repeated inline headers from the upstream into one
	// line before any filter sees them.
	for k, v := range h {
		if inline[k] && len(v) > 1 {
			h[k] = []string{strings.Join(v, ",")}
		}
	}
	for _, o := range w.mutations {
		applyHeader(h, o, false)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *mutatingWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Flush sends the headers (with the mutations) and flushes.
func (w *mutatingWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *mutatingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// listMatcher is a compiled envoy.type.matcher.v3.ListStringMatcher: a
// string matches when any pattern matches.
type listMatcher struct{ patterns []func(string) bool }

func (m *listMatcher) matches(s string) bool {
	for _, p := range m.patterns {
		if p(s) {
			return true
		}
	}
	return false
}

func compileList(l *matcherv3.ListStringMatcher) (*listMatcher, error) {
	m := &listMatcher{}
	for i, p := range l.GetPatterns() {
		fn, err := compileString(p)
		if err != nil {
			return nil, fmt.Errorf("patterns[%d]: %w", i, err)
		}
		m.patterns = append(m.patterns, fn)
	}
	return m, nil
}

func compileString(p *matcherv3.StringMatcher) (func(string) bool, error) {
	fold := p.GetIgnoreCase()
	eq := func(a, b string) bool { return a == b || fold && strings.EqualFold(a, b) }
	switch pat := p.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return func(s string) bool { return eq(s, pat.Exact) }, nil
	case *matcherv3.StringMatcher_Prefix:
		if pat.Prefix == "" {
			return nil, errors.New("empty prefix")
		}
		return func(s string) bool { return len(s) >= len(pat.Prefix) && eq(s[:len(pat.Prefix)], pat.Prefix) }, nil
	case *matcherv3.StringMatcher_Suffix:
		if pat.Suffix == "" {
			return nil, errors.New("empty suffix")
		}
		return func(s string) bool { return len(s) >= len(pat.Suffix) && eq(s[len(s)-len(pat.Suffix):], pat.Suffix) }, nil
	case *matcherv3.StringMatcher_Contains:
		if pat.Contains == "" {
			return nil, errors.New("empty contains")
		}
		want := pat.Contains
		if fold {
			want = strings.ToLower(want)
			return func(s string) bool { return strings.Contains(strings.ToLower(s), want) }, nil
		}
		return func(s string) bool { return strings.Contains(s, want) }, nil
	case *matcherv3.StringMatcher_SafeRegex:
		// Envoy's safe_regex is RE2 and must match the whole string.
		re, err := regexp.Compile(`^(?:` + pat.SafeRegex.GetRegex() + `)$`)
		if err != nil {
			return nil, err
		}
		return re.MatchString, nil
	default:
		return nil, fmt.Errorf("unsupported string matcher %T", pat)
	}
}
