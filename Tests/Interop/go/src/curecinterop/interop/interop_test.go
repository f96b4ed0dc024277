package interop

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "curecinterop/grpc_testing"
)

func newClient(t *testing.T) pb.TestServiceClient {
	return pb.NewTestServiceClient(dial(t))
}

func callContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

func newPayload(size int) *pb.Payload {
	return &pb.Payload{Type: pb.PayloadType_COMPRESSABLE, Body: make([]byte, size)}
}

func streamingRequest(payloadSize int, intervalUs int32, sizes ...int) *pb.StreamingOutputCallRequest {
	req := &pb.StreamingOutputCallRequest{ResponseType: pb.PayloadType_COMPRESSABLE}
	for _, s := range sizes {
		req.ResponseParameters = append(req.ResponseParameters, &pb.ResponseParameters{Size: int32(s), IntervalUs: intervalUs})
	}
	if payloadSize >= 0 {
		req.Payload = newPayload(payloadSize)
	}
	return req
}

func checkPayload(t *testing.T, p *pb.Payload, size int) {
	t.Helper()
	if p.GetType() != pb.PayloadType_COMPRESSABLE {
		t.Errorf("payload type %v", p.GetType())
	}
	if len(p.GetBody()) != size {
		t.Fatalf("payload of %d bytes, want %d", len(p.GetBody()), size)
	}
	if !bytes.Equal(p.GetBody(), make([]byte, size)) {
		t.Errorf("payload body is not all zero bytes")
	}
}

func expectCode(t *testing.T, err error, want codes.Code) *status.Status {
	t.Helper()
	if err == nil {
		t.Fatalf("call succeeded, want %v", want)
	}
	st, _ := status.FromError(err)
	if st.Code() != want {
		t.Fatalf("status %v (%q), want %v", st.Code(), st.Message(), want)
	}
	return st
}

func checkChannelWorks(t *testing.T, client pb.TestServiceClient) {
	t.Helper()
	if _, err := client.EmptyCall(callContext(t), &pb.Empty{}); err != nil {
		t.Fatalf("follow-up EmptyCall: %v", err)
	}
}

// ----------------------------------------------------------------- standard cases

func TestEmptyUnary(t *testing.T) {
	reply, err := newClient(t).EmptyCall(callContext(t), &pb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if proto.Size(reply) != 0 {
		t.Fatalf("non-empty reply %v", reply)
	}
}

func TestLargeUnary(t *testing.T) {
	req := &pb.SimpleRequest{ResponseType: pb.PayloadType_COMPRESSABLE, ResponseSize: 314159, Payload: newPayload(271828)}
	reply, err := newClient(t).UnaryCall(callContext(t), req)
	if err != nil {
		t.Fatal(err)
	}
	checkPayload(t, reply.GetPayload(), 314159)
}

func TestClientStreaming(t *testing.T) {
	stream, err := newClient(t).StreamingInputCall(callContext(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{27182, 8, 1828, 45904} {
		if err := stream.Send(&pb.StreamingInputCallRequest{Payload: newPayload(size)}); err != nil {
			t.Fatal(err)
		}
	}
	reply, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if reply.GetAggregatedPayloadSize() != 74922 {
		t.Fatalf("aggregated size %d, want 74922", reply.GetAggregatedPayloadSize())
	}
}

func TestServerStreaming(t *testing.T) {
	sizes := []int{31415, 9, 2653, 58979}
	stream, err := newClient(t).StreamingOutputCall(callContext(t), streamingRequest(-1, 0, sizes...))
	if err != nil {
		t.Fatal(err)
	}
	for i, size := range sizes {
		reply, err := stream.Recv()
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		checkPayload(t, reply.GetPayload(), size)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("after the last response: %v, want EOF", err)
	}
}

func TestPingPong(t *testing.T) {
	stream, err := newClient(t).FullDuplexCall(callContext(t))
	if err != nil {
		t.Fatal(err)
	}
	exchanges := [][2]int{{31415, 27182}, {9, 8}, {2653, 1828}, {58979, 45904}}
	for i, ex := range exchanges {
		if err := stream.Send(streamingRequest(ex[1], 0, ex[0])); err != nil {
			t.Fatal(err)
		}
		reply, err := stream.Recv()
		if err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
		checkPayload(t, reply.GetPayload(), ex[0])
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("after CloseSend: %v, want EOF", err)
	}
}

func TestEmptyStream(t *testing.T) {
	stream, err := newClient(t).FullDuplexCall(callContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("got %v, want EOF", err)
	}
}

func TestHalfDuplex(t *testing.T) {
	stream, err := newClient(t).HalfDuplexCall(callContext(t))
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{31415, 9, 2653, 58979}
	for _, size := range sizes {
		if err := stream.Send(streamingRequest(-1, 0, size)); err != nil {
			t.Fatal(err)
		}
	}
	stream.CloseSend()
	for _, size := range sizes {
		reply, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		checkPayload(t, reply.GetPayload(), size)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("got %v, want EOF", err)
	}
}

const (
	initialKey   = "x-grpc-test-echo-initial"
	initialValue = "test_initial_metadata_value"
	trailingKey  = "x-grpc-test-echo-trailing-bin"
	trailingVal  = "\xab\xab\xab"
)

func metadataContext(t *testing.T) context.Context {
	return metadata.AppendToOutgoingContext(callContext(t), initialKey, initialValue, trailingKey, trailingVal)
}

func checkEchoedMetadata(t *testing.T, header, trailer metadata.MD) {
	t.Helper()
	if got := header.Get(initialKey); len(got) != 1 || got[0] != initialValue {
		t.Errorf("initial metadata %s = %q, want [%q]", initialKey, got, initialValue)
	}
	if got := trailer.Get(trailingKey); len(got) != 1 || got[0] != trailingVal {
		t.Errorf("trailing metadata %s = %q, want [%q]", trailingKey, got, trailingVal)
	}
}

func TestCustomMetadataUnary(t *testing.T) {
	var header, trailer metadata.MD
	req := &pb.SimpleRequest{ResponseType: pb.PayloadType_COMPRESSABLE, ResponseSize: 314159, Payload: newPayload(271828)}
	reply, err := newClient(t).UnaryCall(metadataContext(t), req, grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	checkPayload(t, reply.GetPayload(), 314159)
	checkEchoedMetadata(t, header, trailer)
}

func TestCustomMetadataFullDuplex(t *testing.T) {
	stream, err := newClient(t).FullDuplexCall(metadataContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(streamingRequest(271828, 0, 314159)); err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	reply, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	checkPayload(t, reply.GetPayload(), 314159)
	header, err := stream.Header()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("got %v, want EOF", err)
	}
	checkEchoedMetadata(t, header, stream.Trailer())
}

const statusMessage = "test status message"

func TestStatusCodeAndMessageUnary(t *testing.T) {
	req := &pb.SimpleRequest{ResponseStatus: &pb.EchoStatus{Code: 2, Message: statusMessage}}
	_, err := newClient(t).UnaryCall(callContext(t), req)
	if st := expectCode(t, err, codes.Unknown); st.Message() != statusMessage {
		t.Fatalf("message %q, want %q", st.Message(), statusMessage)
	}
}

func TestStatusCodeAndMessageFullDuplex(t *testing.T) {
	stream, err := newClient(t).FullDuplexCall(callContext(t))
	if err != nil {
		t.Fatal(err)
	}
	req := &pb.StreamingOutputCallRequest{ResponseStatus: &pb.EchoStatus{Code: 2, Message: statusMessage}}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	_, err = stream.Recv()
	if st := expectCode(t, err, codes.Unknown); st.Message() != statusMessage {
		t.Fatalf("message %q, want %q", st.Message(), statusMessage)
	}
}

func TestSpecialStatusMessage(t *testing.T) {
	const message = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
	req := &pb.SimpleRequest{ResponseStatus: &pb.EchoStatus{Code: 2, Message: message}}
	_, err := newClient(t).UnaryCall(callContext(t), req)
	if st := expectCode(t, err, codes.Unknown); st.Message() != message {
		t.Fatalf("message %q, want %q", st.Message(), message)
	}
}

func TestUnimplementedMethod(t *testing.T) {
	_, err := newClient(t).UnimplementedCall(callContext(t), &pb.Empty{})
	expectCode(t, err, codes.Unimplemented)
}

func TestUnimplementedService(t *testing.T) {
	client := pb.NewUnimplementedServiceClient(dial(t))
	_, err := client.UnimplementedCall(callContext(t), &pb.Empty{})
	expectCode(t, err, codes.Unimplemented)
}

func TestCancelAfterBegin(t *testing.T) {
	client := newClient(t)
	ctx, cancel := context.WithCancel(callContext(t))
	stream, err := client.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = stream.CloseAndRecv()
	expectCode(t, err, codes.Canceled)
	checkChannelWorks(t, client)
}

func TestCancelAfterFirstResponse(t *testing.T) {
	client := newClient(t)
	ctx, cancel := context.WithCancel(callContext(t))
	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(streamingRequest(27182, 0, 31415)); err != nil {
		t.Fatal(err)
	}
	reply, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	checkPayload(t, reply.GetPayload(), 31415)
	cancel()
	_, err = stream.Recv()
	expectCode(t, err, codes.Canceled)
	checkChannelWorks(t, client)
}

func TestTimeoutOnSleepingServer(t *testing.T) {
	client := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	stream, err := client.FullDuplexCall(ctx)
	if err == nil {
		// The deadline may already have passed; Send then fails with io.EOF and
		// Recv reports the status.
		stream.Send(&pb.StreamingOutputCallRequest{Payload: newPayload(27182)})
		_, err = stream.Recv()
	}
	expectCode(t, err, codes.DeadlineExceeded)
	checkChannelWorks(t, client)
}

// ----------------------------------------------------------------- further cases

func TestMessageOverLimitIsResourceExhausted(t *testing.T) {
	client := newClient(t)
	req := &pb.SimpleRequest{ResponseSize: 1, Payload: newPayload(4*1024*1024 + 1)}
	_, err := client.UnaryCall(callContext(t), req)
	expectCode(t, err, codes.ResourceExhausted)
	checkChannelWorks(t, client)
	reply, err := client.UnaryCall(callContext(t), &pb.SimpleRequest{ResponseSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	checkPayload(t, reply.GetPayload(), 10)
}

func TestDeadlineOnStreamingOutputCall(t *testing.T) {
	client := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	stream, err := client.StreamingOutputCall(ctx, streamingRequest(-1, 5000000, 10))
	if err == nil {
		_, err = stream.Recv()
	}
	expectCode(t, err, codes.DeadlineExceeded)
	checkChannelWorks(t, client)
}

func TestDeadlineExpiresWhileServerSleeps(t *testing.T) {
	client := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	started := time.Now()
	stream, err := client.StreamingOutputCall(ctx, streamingRequest(-1, 3000000, 10, 10))
	if err == nil {
		_, err = stream.Recv()
	}
	expectCode(t, err, codes.DeadlineExceeded)
	if elapsed := time.Since(started); elapsed > 2500*time.Millisecond {
		t.Fatalf("deadline reported after %v", elapsed)
	}
	checkChannelWorks(t, client)
}

func TestSlowReaderDoesNotBlockOtherCalls(t *testing.T) {
	client := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const count, size = 400, 64 * 1024
	sizes := make([]int, count)
	for i := range sizes {
		sizes[i] = size
	}
	stream, err := client.StreamingOutputCall(ctx, streamingRequest(-1, 0, sizes...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	// Stop reading; the same connection and a new one keep working meanwhile.
	for i := 0; i < 20; i++ {
		checkChannelWorks(t, client)
		reply, err := client.UnaryCall(callContext(t), &pb.SimpleRequest{ResponseSize: 100000})
		if err != nil {
			t.Fatal(err)
		}
		checkPayload(t, reply.GetPayload(), 100000)
	}
	other := newClient(t)
	for i := 0; i < 20; i++ {
		checkChannelWorks(t, other)
	}
	for i := 0; i < 5; i++ {
		reply, err := stream.Recv()
		if err != nil {
			t.Fatalf("stalled stream resumed with error: %v", err)
		}
		checkPayload(t, reply.GetPayload(), size)
	}
	cancel()
	checkChannelWorks(t, client)
}

func TestManyConcurrentCalls(t *testing.T) {
	client := newClient(t)
	const calls = 300
	errs := make(chan error, calls)
	for i := 0; i < calls; i++ {
		go func(size int) {
			reply, err := client.UnaryCall(callContext(t), &pb.SimpleRequest{ResponseSize: int32(size), Payload: newPayload(size)})
			if err == nil && len(reply.GetPayload().GetBody()) != size {
				err = status.Errorf(codes.Internal, "got %d bytes, want %d", len(reply.GetPayload().GetBody()), size)
			}
			errs <- err
		}(i)
	}
	for i := 0; i < calls; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestLargeClientStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := newClient(t).StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const count, size = 200, 100 * 1024
	for i := 0; i < count; i++ {
		if err := stream.Send(&pb.StreamingInputCallRequest{Payload: newPayload(size)}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	reply, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if reply.GetAggregatedPayloadSize() != count*size {
		t.Fatalf("aggregated %d, want %d", reply.GetAggregatedPayloadSize(), count*size)
	}
}

func TestLargeBidiExchange(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := newClient(t).FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const count, size = 50, 200 * 1024
	sendErr := make(chan error, 1)
	go func() {
		for i := 0; i < count; i++ {
			if err := stream.Send(streamingRequest(size, 0, size)); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- stream.CloseSend()
	}()
	for i := 0; i < count; i++ {
		reply, err := stream.Recv()
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if len(reply.GetPayload().GetBody()) != size {
			t.Fatalf("response %d has %d bytes", i, len(reply.GetPayload().GetBody()))
		}
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("after the last response: %v", err)
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
}
