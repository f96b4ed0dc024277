package interop

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

const testService = "grpc.testing.TestService"

func TestHealthCheck(t *testing.T) {
	client := healthpb.NewHealthClient(dial(t))
	for _, service := range []string{"", testService} {
		reply, err := client.Check(callContext(t), &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("Check(%q): %v", service, err)
		}
		if reply.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q) = %v, want SERVING", service, reply.GetStatus())
		}
	}
	_, err := client.Check(callContext(t), &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	expectCode(t, err, codes.NotFound)
}

func TestHealthWatch(t *testing.T) {
	client := healthpb.NewHealthClient(dial(t))
	cases := map[string]healthpb.HealthCheckResponse_ServingStatus{
		"":                healthpb.HealthCheckResponse_SERVING,
		testService:       healthpb.HealthCheckResponse_SERVING,
		"no.such.Service": healthpb.HealthCheckResponse_SERVICE_UNKNOWN,
	}
	for service, want := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			cancel()
			t.Fatalf("Watch(%q): %v", service, err)
		}
		reply, err := stream.Recv()
		if err != nil {
			cancel()
			t.Fatalf("Watch(%q) first message: %v", service, err)
		}
		if reply.GetStatus() != want {
			t.Errorf("Watch(%q) = %v, want %v", service, reply.GetStatus(), want)
		}
		cancel()
		_, err = stream.Recv()
		expectCode(t, err, codes.Canceled)
	}
	if _, err := client.Check(callContext(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check after watches: %v", err)
	}
}

func TestHealthWatchDeadline(t *testing.T) {
	client := healthpb.NewHealthClient(dial(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	expectCode(t, err, codes.DeadlineExceeded)
}

// reflect runs one reflection stream on the given method. The v1 messages are identical
// on the wire to the v1alpha ones that grpc-go ships, so both versions use them.
func reflect(t *testing.T, method string, requests []*rpb.ServerReflectionRequest) []*rpb.ServerReflectionResponse {
	t.Helper()
	conn := dial(t)
	desc := &grpc.StreamDesc{StreamName: "ServerReflectionInfo", ServerStreams: true, ClientStreams: true}
	stream, err := conn.NewStream(callContext(t), desc, method)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range requests {
		if err := stream.SendMsg(req); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var responses []*rpb.ServerReflectionResponse
	for {
		reply := new(rpb.ServerReflectionResponse)
		err := stream.RecvMsg(reply)
		if err == io.EOF {
			return responses
		}
		if err != nil {
			t.Fatalf("reflection stream: %v", err)
		}
		responses = append(responses, reply)
	}
}

func firstFileName(t *testing.T, reply *rpb.ServerReflectionResponse) string {
	t.Helper()
	files := reply.GetFileDescriptorResponse().GetFileDescriptorProto()
	if len(files) == 0 {
		t.Fatalf("no file descriptor in %v", reply)
	}
	var fd descriptorpb.FileDescriptorProto
	if err := proto.Unmarshal(files[0], &fd); err != nil {
		t.Fatal(err)
	}
	return fd.GetName()
}

func TestReflection(t *testing.T) {
	methods := map[string]string{
		"v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
		"v1":      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
	}
	for version, method := range methods {
		t.Run(version, func(t *testing.T) {
			requests := []*rpb.ServerReflectionRequest{
				{MessageRequest: &rpb.ServerReflectionRequest_ListServices{ListServices: ""}},
				{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: testService}},
				{MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: "grpc/testing/messages.proto"}},
				{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "grpc.health.v1.Health"}},
				{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "no.such.Symbol"}},
			}
			replies := reflect(t, method, requests)
			if len(replies) != len(requests) {
				t.Fatalf("%d responses to %d requests", len(replies), len(requests))
			}
			services := map[string]bool{}
			for _, s := range replies[0].GetListServicesResponse().GetService() {
				services[s.GetName()] = true
			}
			for _, want := range []string{"grpc.health.v1.Health", testService} {
				if !services[want] {
					t.Errorf("service list %v lacks %s", services, want)
				}
			}
			if name := firstFileName(t, replies[1]); name != "grpc/testing/test.proto" {
				t.Errorf("file containing %s: %s", testService, name)
			}
			if name := firstFileName(t, replies[2]); name != "grpc/testing/messages.proto" {
				t.Errorf("file by name: %s", name)
			}
			if name := firstFileName(t, replies[3]); !strings.HasSuffix(name, "health/v1/health.proto") {
				t.Errorf("file containing grpc.health.v1.Health: %s", name)
			}
			if code := replies[4].GetErrorResponse().GetErrorCode(); code != int32(codes.NotFound) {
				t.Errorf("unknown symbol: error code %d, want NOT_FOUND; reply %v", code, replies[4])
			}
		})
	}
}
