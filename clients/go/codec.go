package client

import (
	"fmt"

	protov1 "github.com/golang/protobuf/proto"
	"google.golang.org/grpc/encoding"
	protov2 "google.golang.org/protobuf/proto"
)

// Debian's grpc-go 1.33 registers a "proto" codec built on github.com/golang/protobuf 1.3,
// which predates the protobuf-go API v2 that the curecv1 stubs are generated for
// (protoc-gen-go 1.28) and panics on their messages. This codec replaces it: API v2
// messages go through google.golang.org/protobuf, older generated messages through
// github.com/golang/protobuf as before, so other gRPC code in the same program keeps
// working. The wire format is the same. Current grpc-go releases marshal with
// google.golang.org/protobuf themselves; there the codec changes nothing.
type protoCodec struct{}

// Name is the content subtype the codec serves ("proto", grpc-go's default).
func (protoCodec) Name() string { return "proto" }

func (protoCodec) Marshal(v interface{}) ([]byte, error) {
	switch m := v.(type) {
	case protov2.Message:
		return protov2.Marshal(m)
	case protov1.Message:
		return protov1.Marshal(m)
	}
	return nil, fmt.Errorf("proto codec: cannot marshal %T", v)
}

func (protoCodec) Unmarshal(data []byte, v interface{}) error {
	switch m := v.(type) {
	case protov2.Message:
		return protov2.Unmarshal(data, m)
	case protov1.Message:
		return protov1.Unmarshal(data, m)
	}
	return fmt.Errorf("proto codec: cannot unmarshal into %T", v)
}

func init() { encoding.RegisterCodec(protoCodec{}) }
