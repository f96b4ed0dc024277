"""The standard gRPC interop cases, run with grpcio's client against the server under test."""

import threading
import time

import grpc
import pytest

from generated.grpc_testing import empty_pb2, messages_pb2, test_pb2_grpc
from interop_support import (
    CALL_TIMEOUT,
    ECHO_INITIAL_KEY,
    ECHO_TRAILING_KEY,
    RequestQueue,
    new_channel,
)


@pytest.fixture
def stub(channel):
    return test_pb2_grpc.TestServiceStub(channel)


def payload(size):
    return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=b"\0" * size)


def streaming_request(*sizes, payload_size=None, interval_us=0):
    request = messages_pb2.StreamingOutputCallRequest(
        response_type=messages_pb2.COMPRESSABLE,
        response_parameters=[messages_pb2.ResponseParameters(size=s, interval_us=interval_us) for s in sizes],
    )
    if payload_size is not None:
        request.payload.CopyFrom(payload(payload_size))
    return request


def assert_rpc_error(excinfo, code, details=None):
    error = excinfo.value
    assert error.code() == code, "expected %s, got %s: %r" % (code, error.code(), error.details())
    if details is not None:
        assert error.details() == details


def assert_channel_works(stub):
    assert stub.EmptyCall(empty_pb2.Empty(), timeout=CALL_TIMEOUT) == empty_pb2.Empty()


# ------------------------------------------------------------------- standard cases


def test_empty_unary(stub):
    response = stub.EmptyCall(empty_pb2.Empty(), timeout=CALL_TIMEOUT)
    assert isinstance(response, empty_pb2.Empty)
    assert response.ByteSize() == 0


def test_large_unary(stub):
    request = messages_pb2.SimpleRequest(
        response_type=messages_pb2.COMPRESSABLE, response_size=314159, payload=payload(271828)
    )
    response = stub.UnaryCall(request, timeout=CALL_TIMEOUT)
    assert response.payload.type == messages_pb2.COMPRESSABLE
    assert len(response.payload.body) == 314159
    assert response.payload.body == b"\0" * 314159


def test_client_streaming(stub):
    sizes = [27182, 8, 1828, 45904]
    requests = [messages_pb2.StreamingInputCallRequest(payload=payload(s)) for s in sizes]
    response = stub.StreamingInputCall(iter(requests), timeout=CALL_TIMEOUT)
    assert response.aggregated_payload_size == 74922 == sum(sizes)


def test_server_streaming(stub):
    sizes = [31415, 9, 2653, 58979]
    responses = list(stub.StreamingOutputCall(streaming_request(*sizes), timeout=CALL_TIMEOUT))
    assert [len(r.payload.body) for r in responses] == sizes
    for r in responses:
        assert r.payload.type == messages_pb2.COMPRESSABLE
        assert r.payload.body == b"\0" * len(r.payload.body)


def test_ping_pong(stub):
    exchanges = [(31415, 27182), (9, 8), (2653, 1828), (58979, 45904)]
    requests = RequestQueue()
    responses = stub.FullDuplexCall(requests, timeout=CALL_TIMEOUT)
    try:
        for response_size, payload_size in exchanges:
            requests.put(streaming_request(response_size, payload_size=payload_size))
            response = next(responses)
            assert len(response.payload.body) == response_size
    finally:
        requests.close()
    assert list(responses) == []
    assert responses.code() == grpc.StatusCode.OK


def test_empty_stream(stub):
    responses = stub.FullDuplexCall(iter([]), timeout=CALL_TIMEOUT)
    assert list(responses) == []
    assert responses.code() == grpc.StatusCode.OK


def test_half_duplex(stub):
    sizes = [31415, 9, 2653, 58979]
    requests = [streaming_request(s) for s in sizes]
    responses = list(stub.HalfDuplexCall(iter(requests), timeout=CALL_TIMEOUT))
    assert [len(r.payload.body) for r in responses] == sizes


CUSTOM_METADATA = (
    (ECHO_INITIAL_KEY, "test_initial_metadata_value"),
    (ECHO_TRAILING_KEY, b"\xab\xab\xab"),
)


def assert_echoed_metadata(call):
    initial = dict(call.initial_metadata())
    trailing = dict(call.trailing_metadata())
    assert initial.get(ECHO_INITIAL_KEY) == "test_initial_metadata_value"
    assert trailing.get(ECHO_TRAILING_KEY) == b"\xab\xab\xab"


def test_custom_metadata_unary(stub):
    request = messages_pb2.SimpleRequest(
        response_type=messages_pb2.COMPRESSABLE, response_size=314159, payload=payload(271828)
    )
    response, call = stub.UnaryCall.with_call(request, metadata=CUSTOM_METADATA, timeout=CALL_TIMEOUT)
    assert len(response.payload.body) == 314159
    assert_echoed_metadata(call)


def test_custom_metadata_full_duplex(stub):
    request = streaming_request(314159, payload_size=271828)
    responses = stub.FullDuplexCall(iter([request]), metadata=CUSTOM_METADATA, timeout=CALL_TIMEOUT)
    received = list(responses)
    assert [len(r.payload.body) for r in received] == [314159]
    assert responses.code() == grpc.StatusCode.OK
    assert_echoed_metadata(responses)


STATUS_MESSAGE = "test status message"


def test_status_code_and_message_unary(stub):
    request = messages_pb2.SimpleRequest(
        response_status=messages_pb2.EchoStatus(code=2, message=STATUS_MESSAGE)
    )
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.UnaryCall(request, timeout=CALL_TIMEOUT)
    assert_rpc_error(excinfo, grpc.StatusCode.UNKNOWN, STATUS_MESSAGE)


def test_status_code_and_message_full_duplex(stub):
    request = messages_pb2.StreamingOutputCallRequest(
        response_status=messages_pb2.EchoStatus(code=2, message=STATUS_MESSAGE)
    )
    requests = RequestQueue()
    responses = stub.FullDuplexCall(requests, timeout=CALL_TIMEOUT)
    try:
        requests.put(request)
        with pytest.raises(grpc.RpcError) as excinfo:
            next(responses)
    finally:
        requests.close()
    assert_rpc_error(excinfo, grpc.StatusCode.UNKNOWN, STATUS_MESSAGE)


SPECIAL_STATUS_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"


def test_special_status_message(stub):
    request = messages_pb2.SimpleRequest(
        response_status=messages_pb2.EchoStatus(code=2, message=SPECIAL_STATUS_MESSAGE)
    )
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.UnaryCall(request, timeout=CALL_TIMEOUT)
    assert_rpc_error(excinfo, grpc.StatusCode.UNKNOWN, SPECIAL_STATUS_MESSAGE)


def test_unimplemented_method(stub):
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.UnimplementedCall(empty_pb2.Empty(), timeout=CALL_TIMEOUT)
    assert_rpc_error(excinfo, grpc.StatusCode.UNIMPLEMENTED)


def test_unimplemented_service(channel):
    stub = test_pb2_grpc.UnimplementedServiceStub(channel)
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.UnimplementedCall(empty_pb2.Empty(), timeout=CALL_TIMEOUT)
    assert_rpc_error(excinfo, grpc.StatusCode.UNIMPLEMENTED)


def test_cancel_after_begin(stub):
    requests = RequestQueue()
    future = stub.StreamingInputCall.future(requests, timeout=CALL_TIMEOUT)
    try:
        assert future.cancel()
        with pytest.raises(grpc.FutureCancelledError):
            future.result()
        assert future.code() == grpc.StatusCode.CANCELLED
    finally:
        requests.close()
    assert_channel_works(stub)


def test_cancel_after_first_response(stub):
    requests = RequestQueue()
    responses = stub.FullDuplexCall(requests, timeout=CALL_TIMEOUT)
    try:
        requests.put(streaming_request(31415, payload_size=27182))
        first = next(responses)
        assert len(first.payload.body) == 31415
        responses.cancel()
        with pytest.raises(grpc.RpcError) as excinfo:
            next(responses)
    finally:
        requests.close()
    assert_rpc_error(excinfo, grpc.StatusCode.CANCELLED)
    assert_channel_works(stub)


def test_timeout_on_sleeping_server(stub):
    requests = RequestQueue()
    responses = stub.FullDuplexCall(requests, timeout=0.001)
    try:
        requests.put(messages_pb2.StreamingOutputCallRequest(payload=payload(27182)))
        with pytest.raises(grpc.RpcError) as excinfo:
            next(responses)
    finally:
        requests.close()
    assert_rpc_error(excinfo, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert_channel_works(stub)


# ------------------------------------------------------------------ further cases


def test_unary_response_sizes(stub):
    """Empty, tiny and multi-frame responses from the same channel."""
    for size in (0, 1, 16383, 16384, 16385, 65535, 65536, 1 << 20):
        request = messages_pb2.SimpleRequest(response_size=size, payload=payload(size // 2))
        response = stub.UnaryCall(request, timeout=CALL_TIMEOUT)
        assert len(response.payload.body) == size


def test_message_over_limit_is_resource_exhausted(stub):
    request = messages_pb2.SimpleRequest(response_size=1, payload=payload(4 * 1024 * 1024 + 1))
    assert request.ByteSize() > 4 * 1024 * 1024
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.UnaryCall(request, timeout=CALL_TIMEOUT)
    assert_rpc_error(excinfo, grpc.StatusCode.RESOURCE_EXHAUSTED)
    # The connection stays usable.
    assert_channel_works(stub)
    response = stub.UnaryCall(messages_pb2.SimpleRequest(response_size=10), timeout=CALL_TIMEOUT)
    assert len(response.payload.body) == 10


def test_message_just_under_limit_is_accepted(stub):
    # 4 MiB total including the field headers of payload and body.
    request = messages_pb2.SimpleRequest(response_size=1, payload=payload(4 * 1024 * 1024 - 16))
    assert request.ByteSize() <= 4 * 1024 * 1024
    response = stub.UnaryCall(request, timeout=CALL_TIMEOUT)
    assert len(response.payload.body) == 1


def test_deadline_on_streaming_output_call(stub):
    request = streaming_request(10, interval_us=5_000_000)
    responses = stub.StreamingOutputCall(request, timeout=0.001)
    with pytest.raises(grpc.RpcError) as excinfo:
        next(responses)
    assert_rpc_error(excinfo, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert_channel_works(stub)


def test_deadline_expires_while_server_sleeps(stub):
    """The call is on the server when the deadline passes; the server must let it go."""
    request = streaming_request(10, 10, interval_us=3_000_000)
    started = time.monotonic()
    responses = stub.StreamingOutputCall(request, timeout=0.5)
    with pytest.raises(grpc.RpcError) as excinfo:
        list(responses)
    assert_rpc_error(excinfo, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert time.monotonic() - started < 2.5
    assert_channel_works(stub)


def test_streaming_output_with_intervals(stub):
    request = streaming_request(1, 2, 3, interval_us=100_000)
    started = time.monotonic()
    responses = list(stub.StreamingOutputCall(request, timeout=CALL_TIMEOUT))
    elapsed = time.monotonic() - started
    assert [len(r.payload.body) for r in responses] == [1, 2, 3]
    assert elapsed >= 0.28


def test_slow_reader_does_not_block_other_calls(stub, server_address):
    """A large server stream whose reader stops reading holds only its own stream."""
    count, size = 400, 64 * 1024  # ~26 MB, far beyond any flow-control window
    responses = stub.StreamingOutputCall(streaming_request(*([size] * count)), timeout=60)
    try:
        first = next(responses)
        assert len(first.payload.body) == size
        # Stop reading and use the same connection and a fresh one meanwhile.
        for _ in range(20):
            assert_channel_works(stub)
            response = stub.UnaryCall(messages_pb2.SimpleRequest(response_size=100000), timeout=CALL_TIMEOUT)
            assert len(response.payload.body) == 100000
        other = new_channel(server_address)
        try:
            other_stub = test_pb2_grpc.TestServiceStub(other)
            for _ in range(20):
                assert_channel_works(other_stub)
            streamed = list(other_stub.StreamingOutputCall(streaming_request(*([size] * 20)), timeout=CALL_TIMEOUT))
            assert len(streamed) == 20
        finally:
            other.close()
        # Resume reading a little: the stalled stream is still intact.
        for _ in range(5):
            assert len(next(responses).payload.body) == size
    finally:
        responses.cancel()
    assert_channel_works(stub)


def test_concurrent_calls_on_one_channel(stub):
    errors = []
    sizes = list(range(0, 40000, 1000))

    def worker(offset):
        try:
            for size in sizes[offset::4]:
                response = stub.UnaryCall(messages_pb2.SimpleRequest(response_size=size, payload=payload(size)), timeout=CALL_TIMEOUT)
                assert len(response.payload.body) == size
        except Exception as e:  # collected for the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_many_concurrent_calls(stub):
    """300 unary calls in flight at once on one connection."""
    futures = [
        stub.UnaryCall.future(messages_pb2.SimpleRequest(response_size=i, payload=payload(i)), timeout=30)
        for i in range(300)
    ]
    for i, future in enumerate(futures):
        assert len(future.result().payload.body) == i


def test_large_client_stream(stub):
    """20 MB upstream: the server must keep opening its receive windows."""
    count, size = 200, 100 * 1024
    requests = (messages_pb2.StreamingInputCallRequest(payload=payload(size)) for _ in range(count))
    response = stub.StreamingInputCall(requests, timeout=60)
    assert response.aggregated_payload_size == count * size


def test_large_bidi_exchange(stub):
    """Both directions busy at once: 50 requests of 200 KB, each answered by 200 KB."""
    size = 200 * 1024
    requests = (streaming_request(size, payload_size=size) for _ in range(50))
    sizes = [len(r.payload.body) for r in stub.FullDuplexCall(requests, timeout=60)]
    assert sizes == [size] * 50


def test_response_just_under_client_limit(stub):
    response = stub.UnaryCall(messages_pb2.SimpleRequest(response_size=4 * 1024 * 1024 - 64), timeout=CALL_TIMEOUT)
    assert len(response.payload.body) == 4 * 1024 * 1024 - 64
