// Command grpcgoserver is the grpc-go peer of the RPC benchmarks: it serves the unary
// methods of grpc.testing.TestService doing exactly the work curecd's interop service does
// (decode the request, build a payload of response_size zero bytes, encode the response).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"

	"curecinterop/grpc_testing"

	"google.golang.org/grpc"

	_ "protocodec" // protobuf-go v2 codec for Debian's grpc-go 1.33
)

type testServer struct {
	grpc_testing.UnimplementedTestServiceServer
}

func (testServer) EmptyCall(context.Context, *grpc_testing.Empty) (*grpc_testing.Empty, error) {
	return &grpc_testing.Empty{}, nil
}

func (testServer) UnaryCall(_ context.Context, request *grpc_testing.SimpleRequest) (*grpc_testing.SimpleResponse, error) {
	return &grpc_testing.SimpleResponse{
		Payload: &grpc_testing.Payload{
			Type: grpc_testing.PayloadType_COMPRESSABLE,
			Body: make([]byte, request.GetResponseSize()),
		},
	}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	portFile := flag.String("port-file", "", "write the bound port here once listening")
	flag.Parse()
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	if *portFile != "" {
		port := listener.Addr().(*net.TCPAddr).Port
		if err := os.WriteFile(*portFile, []byte(fmt.Sprintf("%d\n", port)), 0o644); err != nil {
			log.Fatalf("port file: %v", err)
		}
	}
	server := grpc.NewServer()
	grpc_testing.RegisterTestServiceServer(server, testServer{})
	if err := server.Serve(listener); err != nil {
		log.Fatalf("serve: %v", err)
	}
}
