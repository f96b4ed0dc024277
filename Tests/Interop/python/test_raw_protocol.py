"""Well-formed but unusual HTTP/2 and gRPC framing, sent on raw sockets.

These are legal ways for a client to talk that grpcio itself never produces (split
header blocks, tiny or padded DATA frames, several messages per frame, a stream the
client stops reading), plus server-side enforcement of grpc-timeout.
"""

import time
import urllib.parse

import pytest

from generated.grpc_testing import empty_pb2, messages_pb2, test_pb2_grpc
from interop_support import CALL_TIMEOUT, new_channel, use_reference
from raw_h2 import (
    CONTINUATION,
    DATA,
    FLAG_ACK,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FLAG_PADDED,
    GRPC_OK,
    HEADERS,
    PING,
    RawConnection,
    deadline,
    frame,
    grpc_frame,
    grpc_messages,
    grpc_status,
    window_update_frame,
)

GRPC_DEADLINE_EXCEEDED = 4
CANCEL = 0x8

TEST_SERVICE_PATH = "/grpc.testing.TestService/"


@pytest.fixture
def raw(server_address):
    conn = RawConnection(server_address)
    conn.start()
    yield conn
    conn.close()


@pytest.fixture(autouse=True)
def server_still_serves(server_address):
    yield
    channel = new_channel(server_address)
    try:
        stub = test_pb2_grpc.TestServiceStub(channel)
        assert stub.EmptyCall(empty_pb2.Empty(), timeout=CALL_TIMEOUT) == empty_pb2.Empty()
    finally:
        channel.close()


def unary_body(response_size, payload_size=0):
    request = messages_pb2.SimpleRequest(response_size=response_size)
    if payload_size:
        request.payload.body = b"\0" * payload_size
    return grpc_frame(request.SerializeToString())


def expect_ok_unary(raw, stream_id, response_size):
    header_blocks, data, rst = raw.read_response(stream_id, deadline())
    assert rst is None, "stream reset with %#x" % rst
    assert len(header_blocks) == 2, "want response headers and trailers: %r" % header_blocks
    headers = dict(header_blocks[0])
    assert headers.get(":status") == "200"
    assert headers.get("content-type", "").startswith("application/grpc"), headers
    assert grpc_status(header_blocks) == GRPC_OK, header_blocks
    (message,) = grpc_messages(data)
    response = messages_pb2.SimpleResponse.FromString(message)
    assert len(response.payload.body) == response_size


def test_ping_is_acknowledged(raw):
    raw.send(frame(PING, 0, 0, b"curecd!!"))
    end = deadline()
    while True:
        received = raw.read_frame(end)
        if received.type == PING and received.flags & FLAG_ACK:
            assert received.payload == b"curecd!!"
            return


def test_header_block_split_into_continuation_frames(raw):
    # Three CONTINUATION frames: libnghttp2 (1.52 with Debian's fix for CVE-2024-27316)
    # drops connections that use more than 8 for one header block.
    block = raw.encoder.encode(raw.request_headers(TEST_SERVICE_PATH + "UnaryCall"))
    size = -(-len(block) // 4)
    pieces = [block[i : i + size] for i in range(0, len(block), size)]
    assert len(pieces) == 4
    frames = [frame(HEADERS, 0, 1, pieces[0])]
    for piece in pieces[1:-1]:
        frames.append(frame(CONTINUATION, 0, 1, piece))
    frames.append(frame(CONTINUATION, FLAG_END_HEADERS, 1, pieces[-1]))
    frames.append(frame(DATA, FLAG_END_STREAM, 1, unary_body(10)))
    raw.send(b"".join(frames))
    expect_ok_unary(raw, 1, 10)


def test_message_split_across_tiny_data_frames(raw):
    body = unary_body(100, payload_size=1000)
    frames = [raw.headers_frame(1, raw.request_headers(TEST_SERVICE_PATH + "UnaryCall"))]
    chunks = [body[i : i + 7] for i in range(0, len(body), 7)]
    for chunk in chunks[:-1]:
        frames.append(frame(DATA, 0, 1, chunk))
    frames.append(frame(DATA, FLAG_END_STREAM, 1, chunks[-1]))
    raw.send(b"".join(frames))
    expect_ok_unary(raw, 1, 100)


@pytest.mark.skipif(use_reference(), reason="grpc C-core answers padded DATA with RST_STREAM(PROTOCOL_ERROR)")
def test_padded_data_and_empty_end_stream(raw):
    body = unary_body(20, payload_size=50)
    padded = bytes([30]) + body + b"\0" * 30
    raw.send(
        raw.headers_frame(1, raw.request_headers(TEST_SERVICE_PATH + "UnaryCall"))
        + frame(DATA, FLAG_PADDED, 1, padded)
        + frame(DATA, FLAG_END_STREAM, 1, b"")
    )
    expect_ok_unary(raw, 1, 20)


def test_several_messages_in_one_data_frame(raw):
    # Kept under 65535 bytes in total: the raw client sends without waiting for the
    # server to open the connection-level flow-control window.
    sizes = [27182, 8, 1828, 20000]
    body = b"".join(
        grpc_frame(messages_pb2.StreamingInputCallRequest(payload=messages_pb2.Payload(body=b"\0" * s)).SerializeToString())
        for s in sizes
    )
    # One DATA frame may carry at most 16384 bytes (the default SETTINGS_MAX_FRAME_SIZE);
    # the first three messages share frames, the fourth spans several.
    frames = [raw.headers_frame(1, raw.request_headers(TEST_SERVICE_PATH + "StreamingInputCall"))]
    chunks = [body[i : i + 16384] for i in range(0, len(body), 16384)]
    for i, chunk in enumerate(chunks):
        frames.append(frame(DATA, FLAG_END_STREAM if i == len(chunks) - 1 else 0, 1, chunk))
    raw.send(b"".join(frames))
    header_blocks, data, rst = raw.read_response(1, deadline())
    assert rst is None
    assert grpc_status(header_blocks) == GRPC_OK
    (message,) = grpc_messages(data)
    assert messages_pb2.StreamingInputCallResponse.FromString(message).aggregated_payload_size == sum(sizes)


def test_stalled_stream_does_not_block_other_streams(raw):
    """Stream 1 gets no stream-level WINDOW_UPDATE; streams 3 and 5 must still complete."""
    request = messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=64 * 1024) for _ in range(64)]
    )
    raw.send(
        raw.headers_frame(1, raw.request_headers(TEST_SERVICE_PATH + "StreamingOutputCall"))
        + frame(DATA, FLAG_END_STREAM, 1, grpc_frame(request.SerializeToString()))
    )
    # Wait until stream 1 has used up its initial window (65,535 bytes): from then on it is
    # stalled. The connection window is replenished, the stream's is not.
    stalled, end = 0, deadline()
    while stalled < 65535:
        received = raw.read_frame(end)
        if received.type == HEADERS:
            raw.decode_headers(received)  # keeps the HPACK state in order
        elif received.type == DATA and received.stream_id == 1 and received.payload:
            stalled += len(received.payload)
            raw.send(window_update_frame(0, len(received.payload)))
    assert stalled == 65535, "stream 1 sent past its flow-control window"
    raw.send(
        raw.headers_frame(3, raw.request_headers(TEST_SERVICE_PATH + "EmptyCall"))
        + frame(DATA, FLAG_END_STREAM, 3, grpc_frame(b""))
    )
    header_blocks, data, rst = raw.read_response(3, deadline())
    assert rst is None and grpc_status(header_blocks) == GRPC_OK
    assert grpc_messages(data) == [b""]
    raw.send(
        raw.headers_frame(5, raw.request_headers(TEST_SERVICE_PATH + "UnaryCall"))
        + frame(DATA, FLAG_END_STREAM, 5, unary_body(30000))
    )
    expect_ok_unary(raw, 5, 30000)


@pytest.mark.parametrize("timeout", ["200m", "200000u", "1S"])
def test_server_enforces_grpc_timeout(raw, timeout):
    """With grpc-timeout of at most 1 s (at most 8 digits) and a 3 s sleep, the server must end the call by itself."""
    request = messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=1, interval_us=3_000_000)]
    )
    started = time.monotonic()
    raw.send(
        raw.headers_frame(1, raw.request_headers(TEST_SERVICE_PATH + "StreamingOutputCall", [("grpc-timeout", timeout)]))
        + frame(DATA, FLAG_END_STREAM, 1, grpc_frame(request.SerializeToString()))
    )
    header_blocks, data, rst = raw.read_response(1, deadline())
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, "call ended only after %.1fs" % elapsed
    assert data == b"", "a response was sent after the deadline"
    if rst is None:
        assert grpc_status(header_blocks) == GRPC_DEADLINE_EXCEEDED
    else:
        # Ending the stream with RST_STREAM(CANCEL) is also allowed by the gRPC spec.
        assert rst == CANCEL, "RST_STREAM code %#x" % rst


def test_second_request_on_connection_after_response(raw):
    """Streams are independent: two sequential calls, client-chosen odd stream ids 1 and 7."""
    for stream_id, size in ((1, 5), (7, 6)):
        raw.send(
            raw.headers_frame(stream_id, raw.request_headers(TEST_SERVICE_PATH + "UnaryCall"))
            + frame(DATA, FLAG_END_STREAM, stream_id, unary_body(size))
        )
        expect_ok_unary(raw, stream_id, size)


def test_response_frames_respect_max_frame_size(raw):
    """A 100 000-byte response arrives in DATA frames of at most 16384 bytes (the default)."""
    raw.send(
        raw.headers_frame(1, raw.request_headers(TEST_SERVICE_PATH + "UnaryCall"))
        + frame(DATA, FLAG_END_STREAM, 1, unary_body(100000))
    )
    end = deadline()
    sizes = []
    body = b""
    while True:
        received = raw.read_frame(end)
        if received.type == HEADERS:
            raw.decode_headers(received)
            if received.flags & FLAG_END_STREAM:
                break
        elif received.type == DATA and received.stream_id == 1:
            sizes.append(len(received.payload))
            body += received.payload
            if received.payload:
                raw.send(window_update_frame(0, len(received.payload)))
                raw.send(window_update_frame(1, len(received.payload)))
    assert sizes and max(sizes) <= 16384, sizes
    (message,) = grpc_messages(body)
    assert len(messages_pb2.SimpleResponse.FromString(message).payload.body) == 100000


SPECIAL_STATUS_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"


def test_status_message_is_percent_encoded(raw):
    """grpc-message goes on the wire percent-encoded (UTF-8), printable ASCII only."""
    request = messages_pb2.SimpleRequest(
        response_status=messages_pb2.EchoStatus(code=2, message=SPECIAL_STATUS_MESSAGE)
    )
    raw.send(
        raw.headers_frame(1, raw.request_headers(TEST_SERVICE_PATH + "UnaryCall"))
        + frame(DATA, FLAG_END_STREAM, 1, grpc_frame(request.SerializeToString()))
    )
    header_blocks, data, rst = raw.read_response(1, deadline())
    assert rst is None
    trailers = dict(header_blocks[-1])
    assert trailers.get("grpc-status") == "2"
    wire = trailers.get("grpc-message")
    assert wire is not None
    assert all(0x20 <= ord(c) <= 0x7E for c in wire), repr(wire)
    assert urllib.parse.unquote(wire, encoding="utf-8", errors="strict") == SPECIAL_STATUS_MESSAGE


def test_unknown_method_gets_unimplemented(raw):
    raw.send(
        raw.headers_frame(1, raw.request_headers("/grpc.testing.NoSuchService/NoSuchMethod"))
        + frame(DATA, FLAG_END_STREAM, 1, grpc_frame(b""))
    )
    header_blocks, data, rst = raw.read_response(1, deadline())
    assert rst is None
    assert dict(header_blocks[0]).get(":status") == "200"
    assert grpc_status(header_blocks) == 12  # UNIMPLEMENTED
