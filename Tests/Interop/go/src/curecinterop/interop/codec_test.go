package interop

import (
	"fmt"

	protov1 "github.com/golang/protobuf/proto"
	"google.golang.org/grpc/encoding"
	protov2 "google.golang.org/protobuf/proto"
)

// Debian's grpc-go 1.33 marshals with github.com/golang/protobuf 1.3, which predates the
// protobuf-go API v2 that Debian's protoc-gen-go 1.28 generates for. This codec replaces
// the registered "proto" codec: API v2 messages (the grpc.testing stubs) go through
// google.golang.org/protobuf, older generated messages (Debian's health and reflection
// stubs) through github.com/golang/protobuf as before. The wire format is the same.
type dualProtoCodec struct{}

func (dualProtoCodec) Name() string { return "proto" }

func (dualProtoCodec) Marshal(v interface{}) ([]byte, error) {
	switch m := v.(type) {
	case protov2.Message:
		return protov2.Marshal(m)
	case protov1.Message:
		return protov1.Marshal(m)
	}
	return nil, fmt.Errorf("proto codec: cannot marshal %T", v)
}

func (dualProtoCodec) Unmarshal(data []byte, v interface{}) error {
	switch m := v.(type) {
	case protov2.Message:
		return protov2.Unmarshal(data, m)
	case protov1.Message:
		return protov1.Unmarshal(data, m)
	}
	return fmt.Errorf("proto codec: cannot unmarshal into %T", v)
}

func init() {
	encoding.RegisterCodec(dualProtoCodec{})
}
