package server

import (
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/corsd/corsd/policy"
)

// Answers are rendered once per policy revision and decision shape, then
// reused: a policy gives only a few distinct answers (allowed, refused, no
// Origin, preflight allowed or refused...), and all of an answer but the
// echoed Origin is fixed by the policy. A reused answer without the Origin
// is returned as is (no allocation); one that echoes it costs one
// allocation (three as the gRPC service sends it, extauthz_wire.go).
// Answers that depend on the request in other ways (the sentence in a
// cross-origin-protection refusal) are rendered every time.
const (
	// authzShapesMax bounds the answers kept per policy revision; past
	// it, answers are rendered every time.
	authzShapesMax = 32
	// authzRevisionsMax bounds the policies with kept answers; the cache
	// is cleared when full (deleted policies pile up there).
	authzRevisionsMax = 4096
)

// authzAnswers holds the kept answers of each policy, one revision each.
type authzAnswers struct {
	byPolicy sync.Map // policy name ("" for no policy) -> *authzRevision
	size     atomic.Int64
}

// authzRevision is the kept answers of one revision of a policy.
type authzRevision struct {
	revision int64
	shapes   atomic.Pointer[[]*authzShape] // copy on write
}

// authzShape is one kept answer and the decision it answers.
type authzShape struct {
	kind    policy.Kind
	reason  policy.Reason
	mode    policy.Mode
	allowed bool
	status  int
	headers []policy.Header
	// originAt is the index of the header whose value is the request's
	// Origin, or -1.
	originAt int

	resp *authv3.CheckResponse // the whole answer, when originAt < 0
	// For answers that echo the Origin: their parts.
	st       *rpcstatus.Status
	md       *structpb.Struct
	opts     []*corev3.HeaderValueOption
	code     int32 // HTTP status of a denied answer; 0 for OK
	originHV corev3.HeaderValueOption_HeaderAppendAction

	// The answer encoded (extauthz_wire.go): whole, or in parts around
	// the echoed Origin. Both nil if encoding failed.
	wire  *authzWire
	parts *authzWireParts
}

// matches reports whether the shape answers d.
func (s *authzShape) matches(d *policy.Decision) bool {
	if d.Kind != s.kind || d.Reason != s.reason || d.Mode != s.mode || d.Allowed != s.allowed || d.Status != s.status {
		return false
	}
	if s.code != 0 && d.Body != "" {
		return false // kept denied answers have no body
	}
	hs := d.Headers()
	if len(hs) != len(s.headers) {
		return false
	}
	for i := range hs {
		h, k := &hs[i], &s.headers[i]
		if h.Name != k.Name || h.Append != k.Append {
			return false
		}
		if i == s.originAt {
			if h.Value != d.Origin {
				return false
			}
		} else if h.Value != k.Value {
			return false
		}
	}
	return true
}

// authzEcho is an answer that echoes the Origin, in one allocation.
type authzEcho struct {
	resp   authv3.CheckResponse
	ok     authzOKParts
	denied authzDeniedParts
	origin authzHeader
	opts   [policy.MaxHeaders]*corev3.HeaderValueOption
}

type authzOKParts struct {
	wrap authv3.CheckResponse_OkResponse
	ok   authv3.OkHttpResponse
}

type authzDeniedParts struct {
	wrap   authv3.CheckResponse_DeniedResponse
	denied authv3.DeniedHttpResponse
	status typev3.HttpStatus
}

// instance returns the shape's answer to d, which matches it.
func (s *authzShape) instance(d *policy.Decision) *authv3.CheckResponse {
	if s.resp != nil {
		return s.resp
	}
	e := new(authzEcho)
	n := copy(e.opts[:], s.opts)
	e.origin.hv.Key = s.opts[s.originAt].GetHeader().GetKey()
	e.origin.hv.Value = d.Origin
	e.origin.opt.Header = &e.origin.hv
	e.origin.opt.AppendAction = s.originHV
	e.opts[s.originAt] = &e.origin.opt
	e.resp.Status = s.st
	e.resp.DynamicMetadata = s.md
	if s.code == 0 {
		e.ok.ok.ResponseHeadersToAdd = e.opts[:n:n]
		e.ok.wrap.OkResponse = &e.ok.ok
		e.resp.HttpResponse = &e.ok.wrap
	} else {
		e.denied.status.Code = typev3.StatusCode(s.code)
		e.denied.denied.Status = &e.denied.status
		e.denied.denied.Headers = e.opts[:n:n]
		e.denied.wrap.DeniedResponse = &e.denied.denied
		e.resp.HttpResponse = &e.denied.wrap
	}
	return &e.resp
}

// answer returns the answer to d: a kept one when d has the shape of one,
// else a rendered one, kept when it can be reused.
func (a *authzServer) answer(d *policy.Decision) *authv3.CheckResponse {
	rev := a.answers.revision(d)
	if p := rev.shapes.Load(); p != nil {
		for _, s := range *p {
			if s.matches(d) {
				return s.instance(d)
			}
		}
	}
	resp := a.response(d)
	if a.rec != DecisionRecordFull && resp.GetStatus() == authzStatusDenied {
		resp.Status = authzStatusDeniedBare // the message is part of the full record only
	}
	if s := shapeOf(d, resp); s != nil {
		rev.add(s)
	}
	return resp
}

// revision returns the kept answers of d's policy revision, replacing
// those of an older one.
func (c *authzAnswers) revision(d *policy.Decision) *authzRevision {
	if v, ok := c.byPolicy.Load(d.Policy); ok {
		if r := v.(*authzRevision); r.revision == d.Revision {
			return r
		}
	}
	if c.size.Add(1) > authzRevisionsMax {
		c.byPolicy.Clear()
		c.size.Store(1)
	}
	r := &authzRevision{revision: d.Revision}
	c.byPolicy.Store(d.Policy, r)
	return r
}

// add keeps s unless the revision holds enough answers or one like it.
func (r *authzRevision) add(s *authzShape) {
	for {
		old := r.shapes.Load()
		var cur []*authzShape
		if old != nil {
			cur = *old
		}
		if len(cur) >= authzShapesMax {
			return
		}
		next := append(append(make([]*authzShape, 0, len(cur)+1), cur...), s)
		if r.shapes.CompareAndSwap(old, &next) {
			return
		}
	}
}

// shapeOf returns a reusable form of resp, the rendered answer to d, or nil
// when resp depends on the request beyond an echoed Origin.
func shapeOf(d *policy.Decision, resp *authv3.CheckResponse) *authzShape {
	var (
		opts []*corev3.HeaderValueOption
		code int32
	)
	switch hr := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		opts = hr.OkResponse.GetResponseHeadersToAdd()
	case *authv3.CheckResponse_DeniedResponse:
		if hr.DeniedResponse.GetBody() != "" {
			return nil // a sentence naming the request's origin
		}
		opts = hr.DeniedResponse.GetHeaders()
		code = int32(hr.DeniedResponse.GetStatus().GetCode())
	default:
		return nil
	}
	hs := d.Headers()
	// The rendered options must be the decision's headers one for one, or
	// none at all (report-only answers), so that equal headers mean equal
	// options.
	if len(opts) != 0 && len(opts) != len(hs) {
		return nil
	}
	s := &authzShape{
		kind: d.Kind, reason: d.Reason, mode: d.Mode, allowed: d.Allowed, status: d.Status,
		headers:  append([]policy.Header(nil), hs...),
		originAt: -1,
		st:       resp.GetStatus(), md: resp.GetDynamicMetadata(), opts: opts, code: code,
	}
	for i := range hs {
		if d.Origin != "" && hs[i].Value == d.Origin {
			if s.originAt >= 0 {
				return nil // the Origin twice: render every time
			}
			s.originAt = i
		}
	}
	if s.originAt < 0 || len(opts) == 0 {
		s.resp = resp // the Origin is not in the answer
	} else {
		s.originHV = opts[s.originAt].GetAppendAction()
	}
	s.encode()
	return s
}
