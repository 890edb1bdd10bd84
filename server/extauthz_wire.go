package server

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protov2 "google.golang.org/protobuf/proto"

	"github.com/corsd/corsd/policy"
)

// Kept answers are also kept encoded: encoding a CheckResponse is most of
// the ext_authz handler's work, and a kept answer's bytes never change. The
// gRPC service answers with authzWire (the encoded answer), which
// authzCodec sends as is; every other message goes through gRPC's proto
// codec. Check, which tests and in-process callers use, still returns the
// message.

// authzWire is an encoded CheckResponse, with the buffer list the codec
// hands to gRPC (built once for a kept answer).
type authzWire struct {
	b  []byte
	bs [1]mem.Buffer
}

func newAuthzWire(b []byte) *authzWire {
	w := &authzWire{b: b}
	w.bs[0] = mem.SliceBuffer(b)
	return w
}

// Field numbers of the messages an answer is made of (envoy.service.auth.v3
// and envoy.config.core.v3); TestAuthzWireMatchesMessage holds them to the
// generated code.
const (
	fieldCheckStatus   = 1 // CheckResponse.status
	fieldCheckDenied   = 2 // CheckResponse.denied_response
	fieldCheckOK       = 3 // CheckResponse.ok_response
	fieldCheckMetadata = 4 // CheckResponse.dynamic_metadata
	fieldDeniedStatus  = 1 // DeniedHttpResponse.status
	fieldDeniedHeaders = 2 // DeniedHttpResponse.headers
	fieldOKHeadersAdd  = 6 // OkHttpResponse.response_headers_to_add
	fieldOptionHeader  = 1 // HeaderValueOption.header
	fieldOptionAction  = 3 // HeaderValueOption.append_action
	fieldHeaderKey     = 1 // HeaderValue.key
	fieldHeaderValue   = 2 // HeaderValue.value
)

// authzWireParts is the encoded form of a kept answer that echoes the
// Origin: everything but the echoed header option, which is encoded per
// request.
type authzWireParts struct {
	status    []byte // the status field
	httpField protowire.Number
	pre, post []byte // the HTTP response's fields before and after the echoed option
	optField  protowire.Number
	key       string
	action    uint64 // the echoed option's append_action; 0 is not encoded
	metadata  []byte // the dynamic_metadata field, or nil
}

// ulen is a length as a varint: lengths are never negative.
func ulen(n int) uint64 { return uint64(n) } //nolint:gosec // G115: n is a slice length

func appendField(b []byte, n protowire.Number, m protov2.Message) ([]byte, error) {
	v, err := protov2.Marshal(m)
	if err != nil {
		return nil, err
	}
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendBytes(b, v), nil
}

// encode fills s.wire (a whole answer) or s.parts (an answer that
// echoes the Origin). On error the shape is kept without its encoded form.
func (s *authzShape) encode() {
	if s.resp != nil {
		b, err := protov2.Marshal(s.resp)
		if err == nil {
			s.wire = newAuthzWire(b)
		}
		return
	}
	if s.originHV < 0 {
		return // not an action Envoy knows; rendered every time
	}
	p := &authzWireParts{httpField: fieldCheckOK, optField: fieldOKHeadersAdd, action: uint64(s.originHV)}
	var err error
	if p.status, err = appendField(nil, fieldCheckStatus, s.st); err != nil {
		return
	}
	if s.code != 0 {
		p.httpField, p.optField = fieldCheckDenied, fieldDeniedHeaders
		if p.pre, err = appendField(nil, fieldDeniedStatus, &typev3.HttpStatus{Code: typev3.StatusCode(s.code)}); err != nil {
			return
		}
	}
	for i, o := range s.opts {
		switch {
		case i < s.originAt:
			p.pre, err = appendField(p.pre, p.optField, o)
		case i > s.originAt:
			p.post, err = appendField(p.post, p.optField, o)
		default:
			p.key = o.GetHeader().GetKey()
		}
		if err != nil {
			return
		}
	}
	if s.md != nil {
		if p.metadata, err = appendField(nil, fieldCheckMetadata, s.md); err != nil {
			return
		}
	}
	s.parts = p
}

// wireFor encodes the answer to d, which matches s: the kept bytes, or the
// kept parts around the echoed Origin.
func (s *authzShape) wireFor(d *policy.Decision) *authzWire {
	if s.wire != nil {
		return s.wire
	}
	p := s.parts
	hvLen := protowire.SizeTag(fieldHeaderKey) + protowire.SizeBytes(len(p.key)) +
		protowire.SizeTag(fieldHeaderValue) + protowire.SizeBytes(len(d.Origin))
	optLen := protowire.SizeTag(fieldOptionHeader) + protowire.SizeBytes(hvLen)
	if p.action != 0 {
		optLen += protowire.SizeTag(fieldOptionAction) + protowire.SizeVarint(p.action)
	}
	innerLen := len(p.pre) + protowire.SizeTag(p.optField) + protowire.SizeBytes(optLen) + len(p.post)
	n := len(p.status) + protowire.SizeTag(p.httpField) + protowire.SizeBytes(innerLen) + len(p.metadata)
	b := make([]byte, 0, n)
	b = append(b, p.status...)
	b = protowire.AppendTag(b, p.httpField, protowire.BytesType)
	b = protowire.AppendVarint(b, ulen(innerLen))
	b = append(b, p.pre...)
	b = protowire.AppendTag(b, p.optField, protowire.BytesType)
	b = protowire.AppendVarint(b, ulen(optLen))
	b = protowire.AppendTag(b, fieldOptionHeader, protowire.BytesType)
	b = protowire.AppendVarint(b, ulen(hvLen))
	b = protowire.AppendTag(b, fieldHeaderKey, protowire.BytesType)
	b = protowire.AppendString(b, p.key)
	b = protowire.AppendTag(b, fieldHeaderValue, protowire.BytesType)
	b = protowire.AppendString(b, d.Origin)
	if p.action != 0 {
		b = protowire.AppendTag(b, fieldOptionAction, protowire.VarintType)
		b = protowire.AppendVarint(b, p.action)
	}
	b = append(b, p.post...)
	b = append(b, p.metadata...)
	return newAuthzWire(b)
}

// checkWire is Check for the gRPC service: the answer encoded.
func (a *authzServer) checkWire(ctx context.Context, req *authv3.CheckRequest) (any, error) {
	name, r := authzRequest(req)
	d, err := a.d.Decide(ctx, name, r)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	rev := a.answers.revision(&d)
	if p := rev.shapes.Load(); p != nil {
		for _, s := range *p {
			if s.matches(&d) && (s.wire != nil || s.parts != nil) {
				return s.wireFor(&d), nil
			}
		}
	}
	// Not kept (yet): the message, encoded by the codec.
	return a.answer(&d), nil
}

// authzServiceDesc is Envoy's Authorization service answering through
// checkWire. Interceptors see an *authzWire (or a *CheckResponse) as the
// response.
var authzServiceDesc = func() grpc.ServiceDesc {
	d := authv3.Authorization_ServiceDesc
	d.HandlerType = (*any)(nil)
	d.Methods = []grpc.MethodDesc{{MethodName: "Check", Handler: authzCheckHandler}}
	return d
}()

func authzCheckHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(authv3.CheckRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	a := srv.(*authzServer)
	if interceptor == nil {
		return a.checkWire(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return a.checkWire(ctx, req.(*authv3.CheckRequest))
	})
}

// authzCodec is gRPC's proto codec, except that it sends an *authzWire's
// bytes as they are.
type authzCodec struct{ encoding.CodecV2 }

func newAuthzCodec() authzCodec { return authzCodec{encoding.GetCodecV2(proto.Name)} }

func (c authzCodec) Marshal(v any) (mem.BufferSlice, error) {
	if w, ok := v.(*authzWire); ok {
		return w.bs[:], nil // gRPC only reads the bytes, and Free is a no-op
	}
	return c.CodecV2.Marshal(v)
}
