package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/corsd/corsd/policy"
)

const (
	// authzPolicyKey is the context extension (check_settings on the
	// route) that names the policy: "acme" or "policies/acme".
	authzPolicyKey = "corsd_policy"
	// authzMetadataKey is the dynamic metadata key holding the decision,
	// in Envoy's envoy.filters.http.ext_authz namespace:
	// %DYNAMIC_METADATA(envoy.filters.http.ext_authz:corsd.decision)%.
	authzMetadataKey = "corsd.decision"
	// authzMetadataCacheMax bounds the cache of metadata structs; it is
	// cleared when full (old revisions pile up there as policies change).
	authzMetadataCacheMax = 4096
)

// authzServer implements Envoy's ext_authz v3 Authorization service on top
// of a decider. Preflights are answered through a denied response (Envoy
// replies without calling the upstream); CORS headers for actual requests
// ride on an OK response as response_headers_to_add. A refusal is an answer:
// gRPC errors are returned only when no decision can be made, so that Envoy
// applies the operator's failure_mode_allow / status_on_error.
//
// A safe Envoy configuration is examples/envoy/envoy.yaml, which a test
// checks against Envoy's schema: the v3 gRPC transport, allowed_headers
// limited to the headers decisions read (cookies and tokens never reach
// corsd), a short timeout, the filter before authentication filters (a
// preflight carries no credentials), and no Envoy cors filter on the same
// routes. A route names its policy with check_settings.context_extensions
// corsd_policy: acme (or policies/acme); without it, the request's host
// selects the policy.
type authzServer struct {
	authv3.UnimplementedAuthorizationServer
	d decider

	// rec is the form of the decision record; answers keeps the answers
	// rendered per policy revision (extauthz_answers.go).
	rec     DecisionRecord
	answers authzAnswers

	// metadata caches the dynamic metadata struct of each decision shape;
	// the values never change once built, so responses share them.
	metadata     sync.Map // authzMetadataKeyOf -> *structpb.Struct
	metadataSize atomic.Int64
}

var _ authv3.AuthorizationServer = (*authzServer)(nil)

// newAuthzServer answers with the full decision record; New passes the
// operator's choice to newAuthzServerRecord.
func newAuthzServer(d decider) *authzServer {
	return newAuthzServerRecord(d, DecisionRecordFull)
}

func newAuthzServerRecord(d decider, rec DecisionRecord) *authzServer {
	return &authzServer{d: d, rec: rec}
}

// Check answers one ext_authz check. Missing parts of req are treated as
// absent headers, and over-long values as malformed ones; it fails because
// of its input only when req carries more header lines than any Envoy sends
// (InvalidArgument), so that its work is bounded before it starts.
func (a *authzServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if err := checkAuthzShape(req); err != nil {
		return nil, err
	}
	name, r := authzRequest(req)
	d, err := a.d.Decide(ctx, name, r)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return a.answer(&d), nil
}

// maxAuthzHeaderLines bounds the header lines (headers entries plus
// header_map entries) of one CheckRequest. Envoy refuses requests with more
// than max_headers_count (100 by default) lines, and allowed_headers sends
// corsd only the few it reads.
const maxAuthzHeaderLines = 128

// errAuthzTooManyHeaders is built once: refusing a flood must cost less
// than answering a request.
var errAuthzTooManyHeaders = sync.OnceValue(func() error {
	return toStatus(context.Background(), badField("attributes.request.http.headers", "",
		fmt.Sprintf("has more than %d header lines", maxAuthzHeaderLines),
		"send corsd only the headers it reads (allowed_headers in the ext_authz filter)"))
})

// checkAuthzShape refuses a CheckRequest whose header count alone would
// make its conversion cost more than a bounded amount of work.
func checkAuthzShape(req *authv3.CheckRequest) error {
	hr := req.GetAttributes().GetRequest().GetHttp()
	if len(hr.GetHeaders())+len(hr.GetHeaderMap().GetHeaders()) > maxAuthzHeaderLines {
		return errAuthzTooManyHeaders()
	}
	return nil
}

// authzPolicyName returns the policy named by the route's context
// extensions as `policies/{id}`, or "" to select by host. The short form
// costs one allocation; the full form none. A value longer than any policy
// name is returned as given, unread: it names no policy.
func authzPolicyName(attrs *authv3.AttributeContext) string {
	v := attrs.GetContextExtensions()[authzPolicyKey]
	if v == "" || len(v) > maxPolicyNameLen || strings.HasPrefix(v, namePrefix) {
		return v
	}
	return namePrefix + v
}

// maxPolicyNameLen is the length of the longest policy name.
const maxPolicyNameLen = len(namePrefix) + 63

// authzField is a request header that decisions need.
type authzField uint8

const (
	authzHOrigin authzField = iota
	authzHRequestMethod
	authzHRequestHeaders
	authzHRequestPrivateNetwork
	authzHSecFetchSite
	authzHAuthority
	authzHHost
	authzHMethod
	authzHCount
)

// authzFieldOf maps a header key to the field it names, ignoring case,
// without allocating. Envoy sends lower-case keys; other senders may not.
func authzFieldOf(k string) (authzField, bool) {
	var f authzField
	var want string
	switch len(k) {
	case 4:
		f, want = authzHHost, "host"
	case 6:
		f, want = authzHOrigin, "origin"
	case 7:
		f, want = authzHMethod, ":method"
	case 10:
		f, want = authzHAuthority, ":authority"
	case 14:
		f, want = authzHSecFetchSite, "sec-fetch-site"
	case 29:
		f, want = authzHRequestMethod, "access-control-request-method"
	case 30:
		f, want = authzHRequestHeaders, "access-control-request-headers"
	case 38:
		f, want = authzHRequestPrivateNetwork, "access-control-request-private-network"
	default:
		return 0, false
	}
	return f, k == want || strings.EqualFold(k, want)
}

// authzHeaders collects the fields of one request: the first value of
// each and how many non-empty field lines carried it.
type authzHeaders struct {
	val [authzHCount]string
	n   [authzHCount]uint8
	// size is the length of the lines joined with ", ", so that a join
	// past maxFieldLen is never built.
	size [authzHCount]int
}

func (h *authzHeaders) add(f authzField, v string) {
	if v == "" {
		return // an empty field line adds no element
	}
	if h.n[f] == 0 {
		h.val[f] = v
	}
	if h.n[f] < 2 {
		h.n[f]++
	}
	h.size[f] += len(v) + len(", ")
}

// rawString returns the header value of hv: value, else raw_value. A
// raw_value is aliased rather than copied: the request message is
// immutable once received, and this keeps the conversion allocation free.
func rawString(hv *corev3.HeaderValue) string {
	if v := hv.GetValue(); v != "" {
		return v
	}
	b := hv.GetRawValue()
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b)) //nolint:gosec // read-only alias of an immutable request field; see above
}

// authzRequest converts a CheckRequest into the policy name (empty: select
// by host) and the decision input. It allocates nothing unless a field
// arrives in several lines (joined with ", ") or the policy is named by id.
func authzRequest(req *authv3.CheckRequest) (string, policy.Request) {
	attrs := req.GetAttributes()
	hr := attrs.GetRequest().GetHttp()
	var h authzHeaders
	for k, v := range hr.GetHeaders() {
		if f, ok := authzFieldOf(k); ok {
			h.add(f, v)
		}
	}
	for _, hv := range hr.GetHeaderMap().GetHeaders() {
		if f, ok := authzFieldOf(hv.GetKey()); ok {
			h.add(f, rawString(hv))
		}
	}
	for f := range authzHCount {
		switch {
		case h.n[f] < 2:
		case h.size[f] > maxFieldLen+len(", "):
			// Refused as malformed whatever it holds: not worth building.
			h.val[f] = policy.OverlongField
		default:
			h.val[f] = joinAuthzField(hr, f)
		}
	}
	r := policy.Request{
		Method:                             hr.GetMethod(),
		Host:                               hr.GetHost(),
		Origin:                             h.val[authzHOrigin],
		AccessControlRequestMethod:         h.val[authzHRequestMethod],
		AccessControlRequestHeaders:        h.val[authzHRequestHeaders],
		AccessControlRequestPrivateNetwork: h.val[authzHRequestPrivateNetwork],
		SecFetchSite:                       h.val[authzHSecFetchSite],
	}
	if r.Method == "" {
		r.Method = h.val[authzHMethod]
	}
	if r.Host == "" {
		r.Host = h.val[authzHAuthority]
	}
	if r.Host == "" {
		r.Host = h.val[authzHHost]
	}
	return authzPolicyName(attrs), r
}

// joinAuthzField joins every field line of f with ", ": the headers map
// entries in key order (keys that differ only in case; the order makes the
// result deterministic), then the header_map entries in their order.
func joinAuthzField(hr *authv3.AttributeContext_HttpRequest, f authzField) string {
	var keys []string
	for k, v := range hr.GetHeaders() {
		if g, ok := authzFieldOf(k); ok && g == f && v != "" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	sep := func() {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
	}
	for _, k := range keys {
		sep()
		b.WriteString(hr.GetHeaders()[k])
	}
	for _, hv := range hr.GetHeaderMap().GetHeaders() {
		if g, ok := authzFieldOf(hv.GetKey()); ok && g == f {
			if v := rawString(hv); v != "" {
				sep()
				b.WriteString(v)
			}
		}
	}
	return b.String()
}

// Statuses shared by all responses; they are never modified.
var (
	authzStatusOK     = &rpcstatus.Status{Code: int32(codes.OK)}
	authzStatusDenied = &rpcstatus.Status{Code: int32(codes.PermissionDenied), Message: "corsd: answered by the CORS policy"}
)

// authzOK and authzDenied hold a whole response in one allocation.
type authzOK struct {
	resp authv3.CheckResponse
	wrap authv3.CheckResponse_OkResponse
	ok   authv3.OkHttpResponse
}

type authzDenied struct {
	resp   authv3.CheckResponse
	wrap   authv3.CheckResponse_DeniedResponse
	denied authv3.DeniedHttpResponse
	status typev3.HttpStatus
}

// authzHeader is one response header option with its value, allocated
// together.
type authzHeader struct {
	opt corev3.HeaderValueOption
	hv  corev3.HeaderValue
}

// response renders the decision's response plan (see policy.Decision) as a
// CheckResponse, following the mapping in DESIGN.md: status always set,
// exactly one of ok_response and denied_response (Envoy sends a denied
// response to the client without calling the upstream), CORS headers
// overwrite and Vary appends, no empty values, and nothing changed in
// report-only mode. It decides nothing itself.
func (a *authzServer) response(d *policy.Decision) *authv3.CheckResponse {
	md := a.recordFor(d)
	switch {
	case !d.Applies():
		return authzOKResponse(md, nil)
	case d.Answers():
		return authzDeniedResponse(md, d.Status, d.Body, authzHeaderOptions(d))
	}
	return authzOKResponse(md, authzHeaderOptions(d))
}

func authzOKResponse(md *structpb.Struct, headers []*corev3.HeaderValueOption) *authv3.CheckResponse {
	b := new(authzOK)
	b.ok.ResponseHeadersToAdd = headers
	b.wrap.OkResponse = &b.ok
	b.resp.Status = authzStatusOK
	b.resp.HttpResponse = &b.wrap
	b.resp.DynamicMetadata = md
	return &b.resp
}

func authzDeniedResponse(md *structpb.Struct, code int, body string, headers []*corev3.HeaderValueOption) *authv3.CheckResponse {
	if code < 200 || code > 599 {
		code = 403 // the engine answers 200, 204 or 4xx; never let a bad value through
	}
	b := new(authzDenied)
	b.status.Code = typev3.StatusCode(int32(code))
	b.denied.Status = &b.status
	b.denied.Headers = headers
	b.denied.Body = body
	b.wrap.DeniedResponse = &b.denied
	b.resp.Status = authzStatusDenied
	b.resp.HttpResponse = &b.wrap
	b.resp.DynamicMetadata = md
	return &b.resp
}

// authzHeaderOptions converts the decision's headers into header options:
// those the plan appends (Vary) append to the upstream's, every other
// header overwrites any the upstream set, so an upstream's own
// Access-Control-Allow-Origin cannot turn into a comma list. Empty values
// are dropped: Envoy would send an empty header.
func authzHeaderOptions(d *policy.Decision) []*corev3.HeaderValueOption {
	hs := d.Headers()
	n := 0
	for i := range hs {
		if hs[i].Value != "" {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	slab := make([]authzHeader, n)
	opts := make([]*corev3.HeaderValueOption, n)
	j := 0
	for i := range hs {
		h := &hs[i]
		if h.Value == "" {
			continue
		}
		s := &slab[j]
		s.hv.Key = lowerHeaderName(h.Name)
		s.hv.Value = h.Value
		s.opt.Header = &s.hv
		s.opt.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		if h.Append {
			s.opt.AppendAction = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
		}
		opts[j] = &s.opt
		j++
	}
	return opts
}

// lowerHeaderName returns the lower-case form Envoy uses for a header name,
// without allocating for the headers decisions emit.
func lowerHeaderName(name string) string {
	switch name {
	case "Access-Control-Allow-Origin":
		return "access-control-allow-origin"
	case "Access-Control-Allow-Credentials":
		return "access-control-allow-credentials"
	case "Access-Control-Allow-Methods":
		return "access-control-allow-methods"
	case "Access-Control-Allow-Headers":
		return "access-control-allow-headers"
	case "Access-Control-Max-Age":
		return "access-control-max-age"
	case "Access-Control-Allow-Private-Network":
		return "access-control-allow-private-network"
	case "Access-Control-Expose-Headers":
		return "access-control-expose-headers"
	case "Vary":
		return "vary"
	case "Content-Type":
		return "content-type"
	}
	return strings.ToLower(name)
}

// authzMetadataKeyOf identifies a decision's metadata: every field of it.
type authzMetadataKeyOf struct {
	policy   string
	revision int64
	kind     policy.Kind
	reason   policy.Reason
	mode     policy.Mode
	allowed  bool
}

// metadataFor returns the dynamic metadata for d:
// {"corsd.decision": {kind, allowed, reason, policy, revision, mode,
// report_only}}. It holds nothing from the request, so a few structs serve
// all requests; they are shared and must not be modified.
func (a *authzServer) metadataFor(d *policy.Decision) *structpb.Struct {
	k := authzMetadataKeyOf{policy: d.Policy, revision: d.Revision, kind: d.Kind, reason: d.Reason, mode: d.Mode, allowed: d.Allowed}
	if v, ok := a.metadata.Load(k); ok {
		return v.(*structpb.Struct)
	}
	md := &structpb.Struct{Fields: map[string]*structpb.Value{
		authzMetadataKey: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"kind":        structpb.NewStringValue(d.Kind.String()),
			"allowed":     structpb.NewBoolValue(d.Allowed),
			"reason":      structpb.NewStringValue(d.Reason.String()),
			"policy":      structpb.NewStringValue(d.Policy),
			"revision":    structpb.NewNumberValue(float64(d.Revision)),
			"mode":        structpb.NewStringValue(d.Mode.String()),
			"report_only": structpb.NewBoolValue(d.Mode == policy.ModeReportOnly),
		}}),
	}}
	if a.metadataSize.Add(1) > authzMetadataCacheMax {
		a.metadata.Clear()
		a.metadataSize.Store(1)
	}
	v, _ := a.metadata.LoadOrStore(k, md)
	return v.(*structpb.Struct)
}
