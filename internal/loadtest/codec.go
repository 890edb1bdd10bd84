package main

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"
)

// encoded is a message already in its wire form. The harness sends
// requests this way (so every target costs the generator the same to
// send to) and the replay floor answers this way (corsd's own bytes).
type encoded []byte

// rawCodec marshals an encoded value as its bytes and anything else as
// protobuf; it unmarshals protobuf, or copies the bytes into an *encoded.
// It is registered per connection or server (grpc.ForceCodec,
// grpc.ForceServerCodec), never globally.
type rawCodec struct{}

var _ encoding.Codec = rawCodec{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case encoded:
		return m, nil
	case *encoded:
		return *m, nil
	case proto.Message:
		return proto.Marshal(m)
	}
	return nil, fmt.Errorf("loadtest: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	switch m := v.(type) {
	case *encoded:
		*m = append((*m)[:0], data...)
		return nil
	case proto.Message:
		return proto.Unmarshal(data, m)
	}
	return fmt.Errorf("loadtest: cannot unmarshal into %T", v)
}

// Name is "proto": the wire format is protobuf whichever way it is
// produced, so the content-subtype must not change.
func (rawCodec) Name() string { return "proto" }
