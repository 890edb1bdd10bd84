package server

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	protov2 "google.golang.org/protobuf/proto"
)

// undecodableField marks a request that did not decode: the largest field
// number, which no corsd message declares.
const undecodableField protowire.Number = protowire.MaxValidNumber

// maxDecodeErrorLen bounds the decode error carried in the mark.
const maxDecodeErrorLen = 256

// requestCodec is gRPC's proto codec, except that a request that does not
// decode (invalid UTF-8 in a string, malformed wire data) is handed to the
// interceptors empty and marked, instead of failing before them: gRPC
// answers a codec error with Internal, and the caller's mistake is an
// InvalidArgument. checkDecoded turns the mark into that status.
type requestCodec struct{ base encoding.CodecV2 }

func newRequestCodec() requestCodec { return requestCodec{base: newAuthzCodec()} }

func (c requestCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

func (c requestCodec) Name() string { return c.base.Name() }

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(protov2.Message)
	if !ok {
		return err
	}
	protov2.Reset(m)
	mark := protowire.AppendTag(nil, undecodableField, protowire.BytesType)
	mark = protowire.AppendString(mark, truncate(err.Error(), maxDecodeErrorLen))
	m.ProtoReflect().SetUnknown(mark)
	return nil
}

// checkDecoded returns InvalidArgument for a request that requestCodec
// marked as undecodable.
func checkDecoded(req any) error {
	m, ok := req.(protov2.Message)
	if !ok {
		return nil
	}
	u := m.ProtoReflect().GetUnknown()
	num, typ, n := protowire.ConsumeTag(u)
	if n < 0 || num != undecodableField || typ != protowire.BytesType {
		return nil
	}
	msg, _ := protowire.ConsumeBytes(u[n:])
	return status.Errorf(codes.InvalidArgument, "the request does not decode (%s); send valid protobuf, with UTF-8 strings", msg)
}

func decodeUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := checkDecoded(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func decodeStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, decodedStream{ss})
}

// decodedStream checks every message it receives.
type decodedStream struct{ grpc.ServerStream }

func (s decodedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return checkDecoded(m)
}
