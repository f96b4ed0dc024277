"""Misbehaving peers on raw sockets: the server must reject them cleanly and keep serving.

Frames are written by hand (raw_h2.py). After every case a normal grpcio call on a new
connection must succeed.
"""

import contextlib
import os
import random
import resource
import shutil
import socket
import struct
import subprocess
import time
import urllib.parse

import pytest
from hpack import Decoder, HPACKError

from generated.grpc_testing import empty_pb2, messages_pb2, test_pb2_grpc
from interop_support import CALL_TIMEOUT, Daemon, assert_memory_returns_to, new_channel, resident_mib, use_reference
from raw_h2 import (
    CANCEL,
    FLAG_ACK,
    PING,
    SETTINGS,
    WINDOW_UPDATE,
    CASE_TIMEOUT,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    GOAWAY,
    GRPC_OK,
    GRPC_RESOURCE_EXHAUSTED,
    HEADERS,
    PREFACE,
    RST_STREAM,
    Closed,
    RawConnection,
    deadline,
    frame,
    grpc_frame,
    grpc_messages,
    grpc_status,
    read_until_goaway_or_close,
    rst_stream_frame,
)


@pytest.fixture
def raw(server_address):
    conn = RawConnection(server_address)
    yield conn
    conn.close()


def _measured_pid(daemon):
    """The pid of the shared curecd when this run started it (its memory is checked)."""
    if use_reference() or getattr(daemon, "proc", None) is None:
        return None
    return daemon.proc.pid


@pytest.fixture(scope="module")
def warmed_up(daemon, server_address):
    """The shared daemon after one short generation: the chat model and its buffers, which
    stay loaded by design, are in memory before any case takes its memory baseline."""
    if _measured_pid(daemon) is None:
        return
    conn = RawConnection(server_address)
    try:
        conn.start()
        conn.send(conn.headers_frame(1, conn.request_headers(GENERATE_PATH))
                  + frame(DATA, FLAG_END_STREAM, 1, grpc_frame(_generate_request("Hello", 4))))
        conn.read_response(1, time.monotonic() + 180)
    finally:
        conn.close()


@pytest.fixture(autouse=True)
def server_still_serves(server_address, daemon, warmed_up):
    """After each misbehaving peer, a well-behaved client gets service on a new connection,
    and the shared daemon returns to the memory it had before the case."""
    pid = _measured_pid(daemon)
    baseline = resident_mib(pid) if pid else None
    yield
    channel = new_channel(server_address)
    try:
        stub = test_pb2_grpc.TestServiceStub(channel)
        assert stub.EmptyCall(empty_pb2.Empty(), timeout=CALL_TIMEOUT) == empty_pb2.Empty()
    finally:
        channel.close()
    if pid and daemon.alive():
        assert_memory_returns_to(pid, baseline, "after the case")


# --------------------------------------------------------------------------- cases


def test_garbage_bytes(raw):
    rng = random.Random(20240611)
    garbage = bytes(rng.randrange(256) for _ in range(256))
    assert not garbage.startswith(PREFACE[:3])
    raw.send(garbage)
    try:
        read_until_goaway_or_close(raw, deadline())
    except socket.timeout:
        pytest.fail("server neither closed the connection nor sent GOAWAY after garbage")


def test_http1_request(raw):
    raw.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    received, closed = raw.read_raw_until_closed(deadline())
    if closed:
        return  # fine, whatever was said before
    # Still open after the case timeout: acceptable only if the server said no.
    if received.startswith(b"HTTP/1."):
        status = int(received.split(b" ", 2)[1])
        assert status >= 400, received[:200]
        return
    conn_frames = []
    rest = received
    while len(rest) >= 9:
        length = struct.unpack(">I", b"\0" + rest[:3])[0]
        conn_frames.append(rest[3])
        rest = rest[9 + length :]
    assert GOAWAY in conn_frames, "HTTP/1.1 request neither closed nor refused: %r" % received[:200]


# Header blocks that no conforming HPACK decoder may accept (RFC 7541). libnghttp2
# (e.g. nghttpd) answers each with GOAWAY(COMPRESSION_ERROR), as RFC 9113 section 4.3
# requires; see also test_junk_hpack_against_nghttpd.
INVALID_HPACK = {
    # Indexed header field with index 0 (section 6.1).
    "index-zero": b"\x80",
    # Indexed header field beyond static (61) and empty dynamic table (section 2.3.3).
    "index-out-of-range": b"\xfe",
    # Literal with a 2-byte Huffman-coded name: "a" (00011) then 11 one bits of
    # padding, where more than 7 bits is a decoding error (section 5.2).
    "bad-huffman-padding": b"\x40\x82\x1f\xff\x01a",
    # Dynamic table size update above the 4096-byte limit (section 6.3).
    "table-size-too-large": b"\x3f\xe1\xff\x03",
}


@pytest.mark.parametrize("block", sorted(INVALID_HPACK))
def test_junk_hpack_blocks_are_invalid(block):
    """Self-check of the blocks above with an independent decoder (no server involved)."""
    with pytest.raises(HPACKError):
        Decoder().decode(INVALID_HPACK[block])


def expect_compression_error(conn, lenient=False):
    """Reads until GOAWAY/close and checks for GOAWAY(COMPRESSION_ERROR).

    grpc C-core (the grpcio reference server) deviates from RFC 9113 here: it answers the
    stream with grpc-status INTERNAL and RST_STREAM instead of failing the connection.
    With lenient=True that answer is accepted too.
    """
    frames = []
    try:
        while True:
            received = conn.read_frame(deadline())
            frames.append(received)
            if received.type == GOAWAY:
                assert received.goaway_error() == COMPRESSION_ERROR, "GOAWAY error %#x" % received.goaway_error()
                return
            if lenient and received.type == RST_STREAM and received.stream_id == 1:
                return
    except Closed:
        pass
    except socket.timeout:
        pytest.fail("no GOAWAY within %ss after an invalid header block; frames: %r" % (CASE_TIMEOUT, frames))
    pytest.fail("connection closed without GOAWAY(COMPRESSION_ERROR); frames: %r" % frames)


@pytest.mark.parametrize("block", sorted(INVALID_HPACK))
def test_junk_hpack(raw, block):
    raw.start()
    raw.send(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, INVALID_HPACK[block]))
    expect_compression_error(raw, lenient=use_reference())


@pytest.mark.skipif(shutil.which("nghttpd") is None, reason="nghttpd (Debian nghttp2-server) not installed")
@pytest.mark.parametrize("block", sorted(INVALID_HPACK))
def test_junk_hpack_against_nghttpd(block, tmp_path):
    """Validates the strict expectation above against libnghttp2's own server."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        ["nghttpd", "--no-tls", "-a", "127.0.0.1", "-d", str(tmp_path), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        conn = None
        for _ in range(100):
            try:
                conn = RawConnection("127.0.0.1:%d" % port)
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        assert conn is not None, "nghttpd did not start"
        try:
            conn.start()
            conn.send(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, INVALID_HPACK[block]))
            expect_compression_error(conn)
        finally:
            conn.close()
    finally:
        proc.terminate()
        proc.wait(10)


UNARY_PATH = "/grpc.testing.TestService/UnaryCall"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\x00\x00\x00", id="truncated-prefix"),
        pytest.param(b"\x00\x00\x00\x00\x64" + b"\x00" * 10, id="truncated-message"),
    ],
)
def test_truncated_message_then_end_stream(raw, body):
    raw.start()
    raw.send(raw.headers_frame(1, raw.request_headers(UNARY_PATH)) + frame(DATA, FLAG_END_STREAM, 1, body))
    header_blocks, data, rst = raw.read_response(1, deadline())
    assert rst is None, "stream reset (%#x) instead of a gRPC status" % rst
    status = grpc_status(header_blocks)
    assert status != GRPC_OK
    assert dict(header_blocks[0]).get(":status") == "200"


def test_declared_length_over_limit(raw):
    """A prefix announcing 4 GiB - 1 bytes is refused at once, without waiting for the body."""
    raw.start()
    body = b"\x00\xff\xff\xff\xff" + b"\x00" * 16
    raw.send(raw.headers_frame(1, raw.request_headers(UNARY_PATH)) + frame(DATA, 0, 1, body))
    header_blocks, data, rst = raw.read_response(1, deadline())
    assert rst is None, "stream reset (%#x) instead of a gRPC status" % rst
    assert grpc_status(header_blocks) == GRPC_RESOURCE_EXHAUSTED
    assert data == b""


def test_valid_raw_request(raw):
    """Control case: the hand-written framing above is good enough for a real call."""
    raw.start()
    message = b""  # grpc.testing.Empty
    body = b"\x00" + struct.pack(">I", len(message)) + message
    raw.send(
        raw.headers_frame(1, raw.request_headers("/grpc.testing.TestService/EmptyCall"))
        + frame(DATA, FLAG_END_STREAM, 1, body)
    )
    header_blocks, data, rst = raw.read_response(1, deadline())
    assert rst is None
    assert dict(header_blocks[0]).get(":status") == "200"
    assert grpc_status(header_blocks) == GRPC_OK
    assert data == b"\x00\x00\x00\x00\x00"


def test_many_streams_opened_and_reset(raw):
    raw.start()
    headers = raw.request_headers("/grpc.testing.TestService/EmptyCall")
    burst = []
    for i in range(1000):
        stream_id = 1 + 2 * i
        burst.append(raw.headers_frame(stream_id, headers))
        burst.append(rst_stream_frame(stream_id, CANCEL))
    raw.send(b"".join(burst))
    # The server may answer some streams, reset them, or end the connection with
    # GOAWAY (flood protection). It must neither hang nor stop serving others.
    end = time.monotonic() + 3.0
    try:
        while True:
            received = raw.read_frame(end)
            if received.type == GOAWAY:
                break
            if received.type == HEADERS:
                raw.decode_headers(received)
    except (Closed, socket.timeout):
        pass


def test_continuation_flood(raw):
    """One header block spread over 1,000 CONTINUATION frames (about 100 KB of headers).

    The server may drop the connection (libnghttp2 allows 8 CONTINUATIONs), send GOAWAY,
    refuse the stream or even serve it (grpc C-core does); it must not hang or stop
    serving others. The raw connection is read until the stream or connection ends.
    """
    raw.start()
    headers = raw.request_headers("/grpc.testing.TestService/EmptyCall")
    headers += [("x-filler-%04d" % i, "v" * 80) for i in range(1000)]
    block = raw.encoder.encode(headers)
    size = -(-len(block) // 1001)
    pieces = [block[i : i + size] for i in range(0, len(block), size)]
    frames = [frame(HEADERS, 0, 1, pieces[0])]
    frames += [frame(CONTINUATION, 0, 1, p) for p in pieces[1:-1]]
    frames.append(frame(CONTINUATION, FLAG_END_HEADERS, 1, pieces[-1]))
    try:
        raw.send(b"".join(frames) + frame(DATA, FLAG_END_STREAM, 1, b"\0\0\0\0\0"))
        end = deadline()
        while True:
            received = raw.read_frame(end)
            if received.type == GOAWAY or (received.type == RST_STREAM and received.stream_id == 1):
                break
            if received.type == HEADERS:
                raw.decode_headers(received)
                if received.stream_id == 1 and received.flags & FLAG_END_STREAM:
                    break
    except Closed:
        pass  # dropped while we were still sending
    except socket.timeout:
        pytest.fail("no verdict on a 1,000-frame header block within %ss" % CASE_TIMEOUT)


def test_abrupt_disconnect_mid_calls(server_address):
    """Calls in every state, then the TCP connection is reset (SO_LINGER 0)."""
    conn = RawConnection(server_address)
    conn.start()
    sleepy = messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=10, interval_us=500_000) for _ in range(10)]
    )
    big = messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=64 * 1024) for _ in range(50)]
    )
    conn.send(
        # A server stream that sleeps between responses.
        conn.headers_frame(1, conn.request_headers("/grpc.testing.TestService/StreamingOutputCall"))
        + frame(DATA, FLAG_END_STREAM, 1, grpc_frame(sleepy.SerializeToString()))
        # A server stream blocked on flow control.
        + conn.headers_frame(3, conn.request_headers("/grpc.testing.TestService/StreamingOutputCall"))
        + frame(DATA, FLAG_END_STREAM, 3, grpc_frame(big.SerializeToString()))
        # A client stream with half a message.
        + conn.headers_frame(5, conn.request_headers("/grpc.testing.TestService/StreamingInputCall"))
        + frame(DATA, 0, 5, b"\x00\x00\x00\x10\x00\x0a")
        # A bidi stream waiting for requests.
        + conn.headers_frame(7, conn.request_headers("/grpc.testing.TestService/FullDuplexCall"))
    )
    # Every frame above has been read once the server acknowledges a PING sent after them.
    conn.send(frame(PING, 0, 0, b"in-order"))
    end = deadline()
    while True:
        received = conn.read_frame(end)
        if received.type == PING and received.flags & FLAG_ACK and received.payload == b"in-order":
            break
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    # A stream started now whose second response comes 0.5 s after its first has outlived
    # the next wake-up of the sleeping stream above.
    channel = new_channel(server_address)
    try:
        later = messages_pb2.StreamingOutputCallRequest(
            response_parameters=[messages_pb2.ResponseParameters(size=1, interval_us=500_000) for _ in range(2)]
        )
        stub = test_pb2_grpc.TestServiceStub(channel)
        assert len(list(stub.StreamingOutputCall(later, timeout=CALL_TIMEOUT))) == 2
    finally:
        channel.close()


def test_many_idle_connections(server_address):
    """Connections that send the preface and then nothing do not keep others from service."""
    idle = []
    try:
        for _ in range(50):
            conn = RawConnection(server_address)
            conn.start()
            idle.append(conn)
        half = []
        for _ in range(20):
            conn = RawConnection(server_address)
            conn.send(PREFACE[:10])  # not even a whole preface
            half.append(conn)
        idle.extend(half)
        channel = new_channel(server_address)
        try:
            stub = test_pb2_grpc.TestServiceStub(channel)
            assert stub.EmptyCall(empty_pb2.Empty(), timeout=CALL_TIMEOUT) == empty_pb2.Empty()
        finally:
            channel.close()
    finally:
        for conn in idle:
            conn.close()


# --------------------------------------------------------------------------- dataset uploads

UPLOAD_PATH = "/curec.v1.DatasetService/Upload"
LIST_DATASETS_PATH = "/curec.v1.DatasetService/List"
GRPC_INVALID_ARGUMENT = 3
GRPC_NOT_FOUND = 5


def _varint(value):
    """`value` as a protobuf varint."""
    encoded = b""
    while True:
        byte = value & 0x7F
        value >>= 7
        encoded += bytes([byte | (0x80 if value else 0)])
        if not value:
            return encoded


def _pb_bytes(field, payload):
    """A length-delimited protobuf field (field numbers below 16)."""
    return bytes([field << 3 | 2]) + _varint(len(payload)) + payload


def _pb_varint(field, value):
    """A varint protobuf field (field numbers below 16)."""
    return bytes([field << 3]) + _varint(value)


def _upload_header(name):
    return _pb_bytes(1, _pb_bytes(1, name.encode()))


def _upload_chunk(data):
    return _pb_bytes(2, data)


def _dataset_listing_status(server_address, name):
    conn = RawConnection(server_address)
    try:
        conn.start()
        conn.send(conn.headers_frame(1, conn.request_headers(LIST_DATASETS_PATH))
                  + frame(DATA, FLAG_END_STREAM, 1, grpc_frame(_pb_bytes(1, name.encode()))))
        header_blocks, _, rst = conn.read_response(1, deadline())
        assert rst is None
        return grpc_status(header_blocks)
    finally:
        conn.close()


@pytest.mark.skipif(use_reference(), reason="curec.v1 is served by curecd only")
@pytest.mark.parametrize("ending", ["rst-stream", "reset-connection"])
def test_upload_cut_mid_stream_stores_nothing(server_address, ending):
    """A client that starts an upload, sends half a line and vanishes leaves no dataset."""
    conn = RawConnection(server_address)
    conn.start()
    line = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
    conn.send(conn.headers_frame(1, conn.request_headers(UPLOAD_PATH))
              + frame(DATA, 0, 1, grpc_frame(_upload_header("cut-" + ending)))
              + frame(DATA, 0, 1, grpc_frame(_upload_chunk(line + line[:20]))))
    if ending == "rst-stream":
        conn.send(rst_stream_frame(1))
        conn.close()
    else:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    assert _dataset_listing_status(server_address, "cut-" + ending) == GRPC_NOT_FOUND


@pytest.mark.skipif(use_reference(), reason="curec.v1 is served by curecd only")
def test_upload_with_undecodable_messages(raw, server_address):
    """A message that is not an UploadDatasetRequest ends the call with a status, not a crash."""
    raw.start()
    raw.send(raw.headers_frame(1, raw.request_headers(UPLOAD_PATH))
             + frame(DATA, 0, 1, grpc_frame(_upload_header("garbled")))
             + frame(DATA, FLAG_END_STREAM, 1, grpc_frame(b"\xff\xff\xff\xff\x0f")))
    header_blocks, _, rst = raw.read_response(1, deadline())
    assert rst is None
    assert grpc_status(header_blocks) not in (None, GRPC_OK)
    assert _dataset_listing_status(server_address, "garbled") == GRPC_NOT_FOUND


# --------------------------------------------------------------------------- generation

GENERATE_PATH = "/curec.v1.GenerationService/Generate"
GRPC_DEADLINE_EXCEEDED = 4


def _generate_request(prompt, max_tokens=0):
    """GenerateRequest{prompt: ..., sampling: {max_tokens: ...}} encoded by hand."""
    assert max_tokens < 128  # one varint byte
    sampling = b"\x20" + bytes([max_tokens]) if max_tokens else b""
    return _pb_bytes(2, prompt.encode()) + (_pb_bytes(3, sampling) if sampling else b"")


def _read_frame_patiently(conn, seconds):
    """The next frame, waiting up to `seconds` (single reads time out after a few seconds)."""
    end = time.monotonic() + seconds
    while True:
        try:
            return conn.read_frame(end)
        except socket.timeout:
            if time.monotonic() >= end:
                raise


@pytest.mark.skipif(use_reference(), reason="curec.v1 is served by curecd only")
def test_generation_abandoned_mid_stream(server_address):
    """Clients that start long generations and reset the stream or the connection while
    tokens stream free the model: a later generation still runs to its end."""
    for ending in ("rst-stream", "reset-connection"):
        conn = RawConnection(server_address)
        conn.start()
        conn.send(conn.headers_frame(1, conn.request_headers(GENERATE_PATH))
                  + frame(DATA, FLAG_END_STREAM, 1, grpc_frame(_generate_request("Once upon a time", 120))))
        # Wait until the first token arrives (the first call also loads the model), then vanish.
        first = _read_frame_patiently(conn, 120)
        while first.type != DATA:
            first = _read_frame_patiently(conn, 120)
        if ending == "rst-stream":
            conn.send(rst_stream_frame(1))
        else:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    conn = RawConnection(server_address)
    try:
        conn.start()
        conn.send(conn.headers_frame(1, conn.request_headers(GENERATE_PATH))
                  + frame(DATA, FLAG_END_STREAM, 1, grpc_frame(_generate_request("Hello", 3))))
        header_blocks, data, rst = conn.read_response(1, time.monotonic() + 120)
        assert rst is None and grpc_status(header_blocks) == GRPC_OK
        assert len(grpc_messages(data)) >= 2  # at least one token and the final message
    finally:
        conn.close()


@pytest.mark.skipif(use_reference(), reason="curec.v1 is served by curecd only")
def test_generation_prompt_beyond_the_context(raw):
    """A prompt longer than the model's context is refused before any work, with a short message."""
    raw.start()
    prompt = "film " * 9000  # about 9,000 tokens; the context holds 8,192
    body = grpc_frame(_generate_request(prompt))
    pieces = [body[i:i + 16384] for i in range(0, len(body), 16384)]
    raw.send(raw.headers_frame(1, raw.request_headers(GENERATE_PATH))
             + b"".join(frame(DATA, FLAG_END_STREAM if i == len(pieces) - 1 else 0, 1, piece)
                        for i, piece in enumerate(pieces)))
    header_blocks, data, rst = raw.read_response(1, time.monotonic() + 60)
    assert rst is None
    assert grpc_status(header_blocks) == GRPC_INVALID_ARGUMENT
    message = dict(header_blocks[-1]).get("grpc-message", "")
    assert "context" in message and len(message) < 200


# --------------------------------------------------------------------------- reasons as text

EMBED_PATH = "/curec.v1.RewardService/Embed"
SCORE_REASONS_PATH = "/curec.v1.RewardService/ScoreReasons"
RECOMMEND_PATH = "/curec.v1.RecommendService/Recommend"
GRPC_FAILED_PRECONDITION = 9


def _unary_raw(server_address, path, body, seconds=60):
    """One unary call with a hand-encoded request body (grpcio does the framing and flow
    control): the gRPC status code number and message."""
    import grpc

    channel = new_channel(server_address)
    try:
        call = channel.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            call(body, timeout=seconds)
            return GRPC_OK, ""
        except grpc.RpcError as error:
            return error.code().value[0], error.details() or ""
    finally:
        channel.close()


def _embed_request(texts):
    return b"".join(_pb_bytes(1, text.encode()) for text in texts)


def _reason(user, item, text):
    return _pb_bytes(1, _pb_bytes(1, user.encode()) + _pb_bytes(2, item.encode()) + _pb_bytes(3, text.encode()))


@pytest.mark.skipif(use_reference(), reason="curec.v1 is served by curecd only")
@pytest.mark.parametrize(
    "texts, words",
    [
        (["a film"] * 257, "at most 256"),           # oversized batch
        (["a film", ""], "texts[1] is empty"),       # empty text
        (["a film", " \n\t "], "texts[1] is empty"),  # blank text
        (["x" * 1_000_000], "at most 4096 bytes"),   # huge text
        ([], "texts is empty"),
    ],
)
def test_embed_refuses_bad_batches_before_any_work(server_address, texts, words):
    status, message = _unary_raw(server_address, EMBED_PATH, _embed_request(texts))
    assert status == GRPC_INVALID_ARGUMENT
    assert words in message and len(message) < 200


@pytest.mark.skipif(use_reference(), reason="curec.v1 is served by curecd only")
@pytest.mark.parametrize(
    "reasons, code, words",
    [
        ([("no-such-user", "242", "text")], GRPC_NOT_FOUND, "reasons[0].user_id"),
        ([("196", "no-such-item", "text")], GRPC_NOT_FOUND, "reasons[0].item_id"),
        ([("u" * 200_000, "242", "text")], GRPC_NOT_FOUND, "reasons[0].user_id"),   # huge id, not echoed
        ([("196", "242", "y" * 500_000)], GRPC_INVALID_ARGUMENT, "at most 4096 bytes"),
        ([("196", "242", "text")] * 65, GRPC_INVALID_ARGUMENT, "at most 64"),
        ([], GRPC_INVALID_ARGUMENT, "reasons is empty"),
    ],
)
def test_score_reasons_refuses_bad_input_before_any_work(server_address, reasons, code, words):
    body = b"".join(_reason(*reason) for reason in reasons)
    status, message = _unary_raw(server_address, SCORE_REASONS_PATH, body)
    assert status == code
    assert words in message and len(message) < 300


@pytest.mark.skipif(use_reference(), reason="curec.v1 is served by curecd only")
def test_pair_reasons_with_a_hostile_model_name(server_address):
    """Recommend with REASON_SOURCE_PAIR naming a path or a huge name as the model: refused
    with a short message, nothing is loaded."""
    for name in ["../../etc/passwd", "m" * 100_000]:
        body = (_pb_bytes(1, b"196") + bytes([2 << 3, 3]) + bytes([5 << 3, 1]) + _pb_bytes(6, name.encode())
                + bytes([7 << 3, 3]))
        status, message = _unary_raw(server_address, RECOMMEND_PATH, body)
        assert status == GRPC_FAILED_PRECONDITION
        assert "not a chat model" in message and len(message) < 300


@pytest.mark.skipif(use_reference(), reason="curec.v1 is served by curecd only")
def test_pair_reasons_for_too_many_items(server_address):
    """Pair reasons for k=1000 items would be a thousand generations: refused up front."""
    body = _pb_bytes(1, b"196") + bytes([2 << 3, 0xE8, 0x07]) + bytes([5 << 3, 1]) + bytes([7 << 3, 3])
    status, message = _unary_raw(server_address, RECOMMEND_PATH, body)
    assert status == GRPC_INVALID_ARGUMENT
    assert "at most 50 items" in message


@pytest.mark.skipif(use_reference(), reason="curec.v1 is served by curecd only")
@pytest.mark.parametrize("value", ["0", "-5", "1000000000000", "lots", "[1, 2]"])
def test_hostile_pair_reason_cache_size_is_refused_at_start(tmp_path, value):
    """A configuration file with a pair reason cache size out of range or of the wrong type:
    curecd refuses to start, naming the key, instead of serving with a broken cache."""
    from interop_support import daemon_command

    config = tmp_path / "curecd.yaml"
    config.write_text("pair_reason_cache_size: %s\n" % value)
    command = daemon_command(str(tmp_path / "port"), extra_args=("--config", str(config)))
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "pair_reason_cache_size" in output and len(output) < 2000
    assert not (tmp_path / "port").exists()


# --------------------------------------------------------------------------- job parameters

SUBMIT_JOB_PATH = "/curec.v1.JobService/Submit"
LIST_JOBS_PATH = "/curec.v1.JobService/List"


def _submit_request(kind, parameters):
    """SubmitJobRequest{kind, parameters} encoded by hand (map entries are key=1, value=2)."""
    body = _pb_bytes(1, kind.encode())
    for key, value in parameters.items():
        body += _pb_bytes(2, _pb_bytes(1, key.encode()) + _pb_bytes(2, value.encode()))
    return body


@pytest.mark.skipif(use_reference(), reason="curec.v1 is served by curecd only")
@pytest.mark.parametrize("kind, parameters, words", [
    ("pretrain", {"steps": "12abc"}, "'steps' must be an integer"),
    ("pretrain", {"steps": "-5"}, "'steps' must be an integer in 1...1000000"),
    ("pretrain", {"layers": "9" * 400}, "'layers' must be an integer"),
    ("pretrain", {"seed": "1e3"}, "'seed' must be an integer"),
    ("finetune", {"dataset": "d", "output": "o", "dropout": "inf"}, "'dropout' must be a number"),
    ("finetune", {"dataset": "d", "output": "o", "alpha": "1e999"}, "'alpha' must be a number"),
    ("finetune", {"dataset": "d", "output": "o", "targets": ",,,"}, "'targets'"),
    ("finetune", {"dataset": "../../etc", "output": "o"}, "'dataset'"),
    ("evaluate", {"cutoffs": "10," * 300}, "'cutoffs'"),
    ("evaluate", {"split": "\x00\xff"}, "'split' must be validation or test"),
    ("train", {"library": "CURecBPR", "serve": "TRUE"}, "'serve' must be true or false"),
    ("train", {"library": "CURecBPR", "k" * 5000: "v"}, "unknown parameter"),
    ("pipeline", {"stop_after": "everything", "run": "x"}, "'stop_after' must be one of"),
    ("pipeline", {"seeds": "18446744073709551616"}, "'seeds'"),
    ("train", {"library": "CURecBPR", "isolation": "process", "call_time_limit_ms": "0"},
     "'call_time_limit_ms' must be an integer in 1...3600000"),
    ("train", {"library": "CURecBPR", "isolation": "process", "memory_limit_mb": "9" * 400}, "'memory_limit_mb' must be an integer"),
    ("train", {"library": "CURecBPR", "isolation": "process", "cpu_limit_seconds": "-1"}, "'cpu_limit_seconds' must be an integer"),
    ("train", {"library": "CURecBPR", "call_time_limit_ms": "5000"}, "need isolation=process"),
])
def test_job_parameters_of_the_wrong_type_or_range(raw, server_address, kind, parameters, words):
    """Job submissions with values of the wrong type, out of range or huge are refused with
    INVALID_ARGUMENT naming the parameter in a short message, and the daemon keeps serving."""
    raw.start()
    raw.send(raw.headers_frame(1, raw.request_headers(SUBMIT_JOB_PATH))
             + frame(DATA, FLAG_END_STREAM, 1, grpc_frame(_submit_request(kind, parameters))))
    header_blocks, data, rst = raw.read_response(1, deadline())
    assert rst is None
    assert grpc_status(header_blocks) == GRPC_INVALID_ARGUMENT
    message = urllib.parse.unquote(dict(header_blocks[-1]).get("grpc-message", ""))
    assert words in message, message
    assert len(message) < 400
    # Still serving: listing jobs answers, and none was queued.
    conn = RawConnection(server_address)
    try:
        conn.start()
        conn.send(conn.headers_frame(1, conn.request_headers(LIST_JOBS_PATH))
                  + frame(DATA, FLAG_END_STREAM, 1, grpc_frame(b"")))
        listed_headers, listed, listed_rst = conn.read_response(1, deadline())
        assert listed_rst is None and grpc_status(listed_headers) == GRPC_OK
    finally:
        conn.close()



# --------------------------------------------------------------------------- budgets and timeouts
#
# Each case starts its own daemon with the budget under test set low, measures it through
# /proc (resident memory, CPU time, open descriptors) and checks that it stays up, answers
# a health check within a second and returns to its memory baseline.

only_curecd = pytest.mark.skipif(
    use_reference() or bool(os.environ.get("CURECD_ADDR")), reason="needs a curecd started by the test")
HEALTH_PATH = "/grpc.health.v1.Health/Check"
GENERATE_REASON_PATH = "/curec.v1.GenerationService/GenerateReason"
GRPC_CANCELLED = 1
MIB = 1024 * 1024


@contextlib.contextmanager
def _daemon(*args, **kwargs):
    server = Daemon(*args, **kwargs).start()
    try:
        yield server
    finally:
        status = server.stop()
        assert status == 0, "the daemon did not exit cleanly (%r):\n%s" % (status, server.log_tail())


def _cpu_seconds(pid):
    """User and system CPU time the process has used, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _assert_healthy_within_a_second(address, source=None):
    """A raw Health/Check on a new connection (from `source`) answers SERVING within 1 s."""
    started = time.monotonic()
    conn = RawConnection(address, source=source)
    try:
        conn.start()
        conn.send(conn.headers_frame(1, conn.request_headers(HEALTH_PATH))
                  + frame(DATA, FLAG_END_STREAM, 1, grpc_frame(b"")))
        header_blocks, data, rst = conn.read_response(1, started + 1.0)
    finally:
        conn.close()
    assert rst is None and grpc_status(header_blocks) == GRPC_OK
    assert grpc_messages(data) == [b"\x08\x01"], "health status is not SERVING: %r" % data


def _settings_entries(payload):
    return {struct.unpack(">H", payload[i:i + 2])[0]: struct.unpack(">I", payload[i + 2:i + 6])[0]
            for i in range(0, len(payload) - 5, 6)}


@only_curecd
def test_streams_holding_large_bodies_are_bounded_and_reaped():
    """100 unary streams each sending a 4 MiB message without END_STREAM: the connection
    stops being credited once it holds its buffer budget, and the body read timeout ends the
    stalled calls; memory returns to its baseline."""
    with _daemon("--body-read-timeout", "2") as server:
        pid = server.proc.pid
        _assert_healthy_within_a_second(server.address)
        baseline = resident_mib(pid)
        conn = RawConnection(server.address)
        conn.start()
        streams = [1 + 2 * i for i in range(100)]
        headers = conn.request_headers(UNARY_PATH)
        conn.send(b"".join(conn.headers_frame(stream, headers) for stream in streams))
        declared = 4 * MIB
        remaining = {stream: 5 + declared for stream in streams}
        connection_window, initial_window = 65535, 65535
        stream_window = {stream: 65535 for stream in streams}
        sent, peak = 0, baseline
        ended = set()

        def take(received):
            nonlocal connection_window, initial_window
            if received.type == WINDOW_UPDATE:
                increment = struct.unpack(">I", received.payload)[0] & 0x7FFFFFFF
                if received.stream_id == 0:
                    connection_window += increment
                elif received.stream_id in stream_window:
                    stream_window[received.stream_id] += increment
            elif received.type == SETTINGS and not received.flags & FLAG_ACK:
                entries = _settings_entries(received.payload)
                if 4 in entries:
                    for stream in stream_window:
                        stream_window[stream] += entries[4] - initial_window
                    initial_window = entries[4]
            elif received.type == HEADERS:
                conn.decode_headers(received)
                if received.flags & FLAG_END_STREAM:
                    ended.add(received.stream_id)
            elif received.type == RST_STREAM:
                ended.add(received.stream_id)

        # Send as fast as the server's windows allow, until it stops crediting (no credit for
        # two seconds) or far more than any budget has gone through.
        while sent < 64 * MIB:
            progressed = False
            for stream in streams:
                size = min(16384, connection_window, stream_window[stream], remaining[stream])
                if size <= 0 or stream in ended:
                    continue
                if remaining[stream] == 5 + declared:
                    payload = struct.pack(">BI", 0, declared) + b"\x00" * (size - 5)
                else:
                    payload = b"\x00" * size
                conn.send(frame(DATA, 0, stream, payload))
                remaining[stream] -= size
                connection_window -= size
                stream_window[stream] -= size
                sent += size
                progressed = True
            try:
                while True:
                    take(conn.read_frame(time.monotonic() + (0.05 if progressed else 2.0)))
                    progressed = True
            except socket.timeout:
                if not progressed:
                    break
            peak = max(peak, resident_mib(pid))
        peak = max(peak, resident_mib(pid))
        # 16 MiB of connection window, then credit only while under the 8 MiB buffer budget.
        assert sent <= 26 * MIB, "the server credited %.1f MiB on one connection" % (sent / MIB)
        assert peak - baseline < 80, "RSS grew by %.0f MiB (baseline %.0f)" % (peak - baseline, baseline)
        _assert_healthy_within_a_second(server.address)
        # The body read timeout ends every stalled call (with a status, then RST_STREAM).
        end = time.monotonic() + 20
        while len(ended) < len(streams):
            take(conn.read_frame(end))
        conn.close()
        _assert_healthy_within_a_second(server.address)
        assert_memory_returns_to(pid, baseline, "after the stalled calls ended", slack_mib=48)


@only_curecd
def test_zero_window_readers_are_reset():
    """A client that opens no flow-control window and asks for large streamed responses:
    each stream is reset after the send timeout, and what it pinned is freed."""
    with _daemon("--send-timeout", "2") as server:
        pid = server.proc.pid
        _assert_healthy_within_a_second(server.address)
        baseline = resident_mib(pid)
        conn = RawConnection(server.address)
        # SETTINGS_INITIAL_WINDOW_SIZE = 0: the server may send no DATA at all.
        conn.send(PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 0)))
        big = messages_pb2.StreamingOutputCallRequest(
            response_parameters=[messages_pb2.ResponseParameters(size=64 * 1024) for _ in range(50)])
        streams = [1 + 2 * i for i in range(20)]
        conn.send(b"".join(
            conn.headers_frame(stream, conn.request_headers("/grpc.testing.TestService/StreamingOutputCall"))
            + frame(DATA, FLAG_END_STREAM, stream, grpc_frame(big.SerializeToString()))
            for stream in streams))
        reset, peak = {}, baseline
        end = time.monotonic() + 20
        while len(reset) < len(streams):
            received = conn.read_frame(end)
            if received.type == HEADERS:
                conn.decode_headers(received)
            elif received.type == RST_STREAM:
                reset[received.stream_id] = struct.unpack(">I", received.payload)[0]
            peak = max(peak, resident_mib(pid))
        assert set(reset) == set(streams) and set(reset.values()) == {CANCEL}
        _assert_healthy_within_a_second(server.address)
        conn.close()
        assert peak - baseline < 64, "RSS grew by %.0f MiB" % (peak - baseline)
        assert_memory_returns_to(pid, baseline, "after the resets")


def _generate_reason_request(user, item, max_tokens):
    assert max_tokens < 128  # one varint byte
    return _pb_bytes(1, user.encode()) + _pb_bytes(2, item.encode()) + _pb_bytes(3, b"\x20" + bytes([max_tokens]))


def _raw_stream_call(address, path, body, seconds, timeout_header=None):
    """One call on a new raw connection; (grpc-status, data)."""
    conn = RawConnection(address)
    conn.read_timeout = seconds
    try:
        conn.start()
        extra = [("grpc-timeout", timeout_header)] if timeout_header else []
        conn.send(conn.headers_frame(1, conn.request_headers(path, extra))
                  + frame(DATA, FLAG_END_STREAM, 1, grpc_frame(body)))
        header_blocks, data, rst = conn.read_response(1, time.monotonic() + seconds)
        assert rst is None
        return grpc_status(header_blocks), data
    finally:
        conn.close()


@only_curecd
def test_reset_generate_reason_streams_cost_no_generation():
    """Ten GenerateReason calls reset as soon as they are sent cost no generation: the
    daemon's CPU time for them and two legitimate calls stays within that of the legitimate
    calls plus a small margin (before, each reset stream ran its whole prefill: 18.6 CPU-s for
    ten), and the legitimate calls meet their deadline."""
    with _daemon() as server:
        pid = server.proc.pid
        request = _generate_reason_request("196", "242", 3)
        # The first call loads the model.
        status, _ = _raw_stream_call(server.address, GENERATE_REASON_PATH, request, 120)
        assert status == GRPC_OK, "GenerateReason is not available: %d\n%s" % (status, server.log_tail())
        baseline = resident_mib(pid)
        before = _cpu_seconds(pid)
        status, _ = _raw_stream_call(server.address, GENERATE_REASON_PATH, request, 60)
        assert status == GRPC_OK
        legitimate = _cpu_seconds(pid) - before

        conn = RawConnection(server.address)
        conn.start()
        long_request = _generate_reason_request("196", "242", 120)
        burst = b"".join(
            conn.headers_frame(stream, conn.request_headers(GENERATE_REASON_PATH))
            + frame(DATA, FLAG_END_STREAM, stream, grpc_frame(long_request))
            + rst_stream_frame(stream)
            for stream in range(1, 21, 2))
        assert len(burst) < 4096
        before = _cpu_seconds(pid)
        conn.send(burst)
        status, _ = _raw_stream_call(server.address, GENERATE_REASON_PATH, request, 40, timeout_header="30S")
        assert status == GRPC_OK
        # The PING is answered once the burst is read; then the legitimate call again.
        conn.send(frame(PING, 0, 0, b"burst-in"))
        end = deadline()
        while True:
            received = conn.read_frame(end)
            if received.type == PING and received.flags & FLAG_ACK and received.payload == b"burst-in":
                break
        conn.close()
        status, _ = _raw_stream_call(server.address, GENERATE_REASON_PATH, request, 40, timeout_header="30S")
        assert status == GRPC_OK
        spent = _cpu_seconds(pid) - before
        assert spent < 2 * legitimate + 2.0, (
            "10 reset streams and 2 calls cost %.1f CPU-s; one call costs %.1f" % (spent, legitimate))
        _assert_healthy_within_a_second(server.address)
        assert_memory_returns_to(pid, baseline, "after the reset generations")


@only_curecd
def test_generation_beyond_the_queue_limit_is_refused():
    """With one generation worker and a queue of one, a third concurrent generation is
    refused with RESOURCE_EXHAUSTED at once; the queued one runs when the first is reset."""
    with _daemon("--generation-workers", "1", "--generation-queue-limit", "1") as server:
        conn = RawConnection(server.address)
        try:
            conn.start()
            request = grpc_frame(_generate_request("Once upon a time", 120))
            path = conn.request_headers(GENERATE_PATH)
            conn.send(conn.headers_frame(1, path) + frame(DATA, FLAG_END_STREAM, 1, request))
            first = _read_frame_patiently(conn, 120)
            while not (first.type == DATA and first.stream_id == 1):
                if first.type == HEADERS:
                    block = conn.decode_headers(first)
                    assert not first.flags & FLAG_END_STREAM, "the first generation ended: %r" % block
                first = _read_frame_patiently(conn, 120)
            conn.send(conn.headers_frame(3, path) + frame(DATA, FLAG_END_STREAM, 3, request)
                      + conn.headers_frame(5, path) + frame(DATA, FLAG_END_STREAM, 5, request))
            refused, tokens = {}, set()
            end = time.monotonic() + 60
            reset_first = False
            while not (refused and tokens - {1}):
                received = conn.read_frame(end)
                if received.type == WINDOW_UPDATE or received.type == PING:
                    continue
                if received.type == DATA and received.payload:
                    conn.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(received.payload)))
                              + frame(WINDOW_UPDATE, 0, received.stream_id, struct.pack(">I", len(received.payload))))
                    tokens.add(received.stream_id)
                if received.type == HEADERS:
                    block = dict(conn.decode_headers(received))
                    if received.flags & FLAG_END_STREAM and received.stream_id in (3, 5):
                        refused[received.stream_id] = (int(block["grpc-status"]),
                                                       urllib.parse.unquote(block.get("grpc-message", "")))
                if refused and not reset_first:
                    conn.send(rst_stream_frame(1))
                    reset_first = True
            assert len(refused) == 1, refused
            (code, message), = refused.values()
            assert code == GRPC_RESOURCE_EXHAUSTED and "generation is at capacity" in message and len(message) < 200
            assert tokens - {1} == {3, 5} - set(refused), "the queued generation did not run after the reset"
            _assert_healthy_within_a_second(server.address)
        finally:
            conn.close()


@only_curecd
def test_idle_connections_from_one_peer_do_not_lock_out_another():
    """A peer holding its per-address limit of idle connections gets no more; another
    address is served at once."""
    with _daemon("--max-connections-per-peer", "8") as server:
        pid = server.proc.pid
        _assert_healthy_within_a_second(server.address)
        baseline = resident_mib(pid)
        held = []
        # From an address nothing else here uses: the health checks' connections from
        # 127.0.0.1 may still be closing on the server and count against that address.
        peer = "127.0.0.3"
        try:
            for _ in range(8):
                conn = RawConnection(server.address, source=peer)
                conn.start()
                held.append(conn)
            # The accepted connections answer (SETTINGS); the 9th is closed on accept.
            for conn in held:
                conn.send(frame(PING, 0, 0, b"accepted"))
                end = deadline()
                while True:
                    received = conn.read_frame(end)
                    if received.type == PING and received.flags & FLAG_ACK:
                        break
            extra = RawConnection(server.address, source=peer)
            extra.start()
            _, closed = extra.read_raw_until_closed(deadline())
            extra.close()
            assert closed, "a ninth connection from the same address was kept"
            _assert_healthy_within_a_second(server.address, source="127.0.0.2")
        finally:
            for conn in held:
                conn.close()
        _assert_healthy_within_a_second(server.address)
        assert_memory_returns_to(pid, baseline, "after the idle connections closed")


@only_curecd
def test_out_of_descriptors_pauses_accept_with_one_log_line():
    """With RLIMIT_NOFILE low, connections beyond it make accept fail with EMFILE: the
    daemon logs that once, does not spin, and serves again when descriptors are free."""
    def limit_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    with _daemon("--event-loops", "1", preexec_fn=limit_files) as server:
        pid = server.proc.pid
        _assert_healthy_within_a_second(server.address)
        baseline = resident_mib(pid)
        open_now = len(os.listdir("/proc/%d/fd" % pid))
        assert open_now < 100, "the daemon holds %d descriptors at rest" % open_now
        held = []
        try:
            for _ in range(128 - open_now + 40):
                conn = RawConnection(server.address)
                held.append(conn)
            end = time.monotonic() + 15
            while "pausing new connections" not in server.log_text():
                assert time.monotonic() < end, "accept never ran out of descriptors:\n" + server.log_tail()
                held[-1].sock.settimeout(0.2)
                try:
                    held[-1].sock.recv(1)
                except socket.timeout:
                    pass
            cpu_before = _cpu_seconds(pid)
            # Still out of descriptors: another connection waits in the backlog a while.
            waiting = RawConnection(server.address)
            held.append(waiting)
            waiting.start()
            _, closed = waiting.read_raw_until_closed(time.monotonic() + 2.0)
            assert not closed
            spent = _cpu_seconds(pid) - cpu_before
            assert spent < 1.0, "%.1f CPU-s spent while accept had no descriptors (spinning)" % spent
        finally:
            for conn in held:
                conn.close()
        log = server.log_text()
        # One line per episode; a descriptor the daemon frees for a moment (a file it read)
        # ends an episode early, so a few episodes may start, never a line per accept.
        assert 1 <= log.count("pausing new connections") <= 5, log[-3000:]
        assert len(log.splitlines()) < 200, "the log grew to %d lines" % len(log.splitlines())
        # Descriptors are free again: within the longest pause (1 s) accept resumes.
        end = time.monotonic() + 10
        while True:
            try:
                _assert_healthy_within_a_second(server.address)
                break
            except (AssertionError, Closed, socket.timeout, OSError):
                assert time.monotonic() < end, "not serving after descriptors were freed:\n" + server.log_tail()
        assert "accepting connections again" in server.log_text()
        assert_memory_returns_to(pid, baseline, "after the connections beyond the descriptor limit")


@pytest.fixture(scope="module")
def short_timeouts():
    """A daemon whose header, body, keepalive and default-deadline budgets are one second."""
    if use_reference() or os.environ.get("CURECD_ADDR"):
        pytest.skip("needs a curecd started by the test")
    with _daemon("--header-read-timeout", "1", "--body-read-timeout", "1", "--keepalive-interval", "1",
                 "--keepalive-timeout", "1", "--default-deadline", "1") as server:
        yield server


def test_half_open_call_is_reaped(short_timeouts):
    """A unary call that sent half its message and then nothing ends with CANCELLED after
    the body read timeout, and the connection keeps serving."""
    conn = RawConnection(short_timeouts.address)
    try:
        conn.start()
        # The client's own deadline is long: the body read timeout ends the call first.
        conn.send(conn.headers_frame(1, conn.request_headers(UNARY_PATH, [("grpc-timeout", "30S")]))
                  + frame(DATA, 0, 1, b"\x00\x00\x00\x00\x64" + b"\x00" * 10))
        header_blocks, _, rst = conn.read_response(1, deadline())
        assert rst is None
        assert grpc_status(header_blocks) == GRPC_CANCELLED
        message = urllib.parse.unquote(dict(header_blocks[-1]).get("grpc-message", ""))
        assert "stopped arriving" in message and len(message) < 200
        conn.send(conn.headers_frame(3, conn.request_headers("/grpc.testing.TestService/EmptyCall"))
                  + frame(DATA, FLAG_END_STREAM, 3, grpc_frame(b"")))
        header_blocks, _, rst = conn.read_response(3, deadline())
        assert rst is None and grpc_status(header_blocks) == GRPC_OK
    finally:
        conn.close()
    _assert_healthy_within_a_second(short_timeouts.address)


def test_connection_without_a_preface_is_closed(short_timeouts):
    conn = RawConnection(short_timeouts.address)
    try:
        conn.send(PREFACE[:10])
        _, closed = conn.read_raw_until_closed(deadline())
        assert closed, "a connection that never completed its preface was kept"
    finally:
        conn.close()
    _assert_healthy_within_a_second(short_timeouts.address)


def test_peer_that_does_not_answer_keepalive_is_dropped(short_timeouts):
    """The raw socket is read but never answered: the server PINGs, then closes."""
    conn = RawConnection(short_timeouts.address)
    try:
        conn.start()
        received, closed = conn.read_raw_until_closed(deadline())
        assert closed, "a peer that answers no PING was kept"
        types = []
        while len(received) >= 9:
            length = struct.unpack(">I", b"\0" + received[:3])[0]
            types.append(received[3])
            received = received[9 + length:]
        assert PING in types, "closed without a keepalive PING (frame types %s)" % types
    finally:
        conn.close()
    _assert_healthy_within_a_second(short_timeouts.address)


def test_call_without_a_deadline_gets_the_default_one(short_timeouts):
    import grpc

    channel = new_channel(short_timeouts.address)
    try:
        stub = test_pb2_grpc.TestServiceStub(channel)
        slow = messages_pb2.StreamingOutputCallRequest(
            response_parameters=[messages_pb2.ResponseParameters(size=1, interval_us=30_000_000)])
        with pytest.raises(grpc.RpcError) as failure:
            list(stub.StreamingOutputCall(slow))
        assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        channel.close()


@only_curecd
def test_old_connection_gets_goaway_then_closes():
    with _daemon("--max-connection-age", "1", "--max-connection-age-grace", "1") as server:
        conn = RawConnection(server.address)
        try:
            conn.start()
            frames, goaway = read_until_goaway_or_close(conn, deadline())
            assert goaway is not None, "no GOAWAY for an old connection: %r" % frames
            _, closed = conn.read_raw_until_closed(deadline())
            assert closed
        finally:
            conn.close()
        _assert_healthy_within_a_second(server.address)


# --------------------------------------------------------------------------- isolated plugins

LOAD_PLUGIN_PATH = "/curec.v1.PluginService/Load"
UNLOAD_PLUGIN_PATH = "/curec.v1.PluginService/Unload"
SCORE_PATH = "/curec.v1.RecommendService/Score"
GRPC_UNAVAILABLE = 14


def _load_request(name, library, config=b"", isolation=None, call_time_limit_ms=None):
    body = _pb_bytes(1, name.encode()) + _pb_bytes(2, library.encode()) + (_pb_bytes(3, config) if config else b"")
    if isolation is not None:
        body += _pb_varint(5, isolation)
    if call_time_limit_ms is not None:
        body += _pb_varint(6, call_time_limit_ms)
    return body


# --------------------------------------------------------------------------- dynamic batching


def _batching(delay=None, preferred=(), max_batch=None, max_queue=None):
    """DynamicBatching{max_queue_delay_microseconds, preferred_batch_size (packed),
    max_batch_size, max_queue_size} encoded by hand."""
    body = b""
    if delay is not None:
        body += bytes([1 << 3]) + _varint(delay)
    if preferred:
        body += _pb_bytes(2, b"".join(_varint(size) for size in preferred))
    if max_batch is not None:
        body += bytes([3 << 3]) + _varint(max_batch)
    if max_queue is not None:
        body += bytes([4 << 3]) + _varint(max_queue)
    return body


@pytest.mark.skipif(use_reference(), reason="curec.v1 is served by curecd only")
@pytest.mark.parametrize(
    "isolation, limit, words",
    [
        (99, None, "isolation 99 is not a PluginIsolation value"),         # unknown enum value
        (2**31 - 1, None, "is not a PluginIsolation value"),
        (None, 5000, "applies only with isolation PLUGIN_ISOLATION_PROCESS"),  # limit without isolation
        (1, 5000, "applies only with isolation PLUGIN_ISOLATION_PROCESS"),
        (2, 4_000_000_000, "above the maximum of 3600000"),                  # limit beyond an hour
    ],
)
def test_load_with_a_hostile_isolation_is_refused(server_address, isolation, limit, words):
    """The isolation options of Load are checked before any library is resolved or any
    worker started: INVALID_ARGUMENT with a short message, nothing loaded."""
    status, message = _unary_raw(server_address, LOAD_PLUGIN_PATH,
                                 _load_request("hostile_isolation", "CURecTestMisbehaving", b"", isolation, limit))
    assert status == GRPC_INVALID_ARGUMENT, message
    assert words in message and len(message) < 200


def _score_request(count):
    return _pb_bytes(1, b"196") + b"".join(_pb_bytes(2, str(item).encode()) for item in range(1, count + 1))


def _score_with(plugin, count):
    return _score_request(count) + _pb_bytes(3, plugin.encode())


@pytest.mark.skipif(use_reference(), reason="curec.v1 is served by curecd only")
@pytest.mark.parametrize("mode, words", [("garbage", "malformed reply"), ("segv", "stopped during the call"),
                                         ("exit", "stopped during the call")])
def test_an_isolated_plugin_that_misbehaves_is_restarted_and_reported(server_address, mode, words):
    """A C plugin in its own worker writes garbage on its channel, dereferences NULL or calls
    exit() when asked for 13 scores: that call is UNAVAILABLE, the instance's health goes
    NOT_SERVING and back to SERVING, the next call is answered, and the daemon serves on."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    name = "isolated_" + mode
    status, message = _unary_raw(server_address, LOAD_PLUGIN_PATH,
                                 _load_request(name, "CURecTestMisbehaving", mode.encode(), isolation=2))
    assert status == GRPC_OK, message
    channel = new_channel(server_address)
    try:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="plugin/" + name), timeout=120)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        status, message = _unary_raw(server_address, SCORE_PATH, _score_with(name, 2))
        assert status == GRPC_OK, message
        status, message = _unary_raw(server_address, SCORE_PATH, _score_with(name, 13))
        assert status == GRPC_UNAVAILABLE, message
        assert words in message and len(message) < 400
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        status, message = _unary_raw(server_address, SCORE_PATH, _score_with(name, 2))
        assert status == GRPC_OK, message
    finally:
        channel.close()
        _unary_raw(server_address, UNLOAD_PLUGIN_PATH, _pb_bytes(1, name.encode()))


RELOAD_PLUGIN_PATH = "/curec.v1.PluginService/Reload"
MODEL_INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"


def _length_delimited_field(message, number):
    """The first length-delimited field `number` of a serialized message (b"" when absent)."""
    position = 0

    def varint():
        nonlocal position
        value, shift = 0, 0
        while True:
            byte = message[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while position < len(message):
        key = varint()
        kind = key & 7
        if kind == 0:
            varint()
        elif kind == 2:
            length = varint()
            if key >> 3 == number:
                return message[position:position + length]
            position += length
        elif kind == 5:
            position += 4
        elif kind == 1:
            position += 8
        else:
            raise ValueError("wire type %d" % kind)
    return b""


def _raw_method(channel, path):
    return channel.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)


def _infer_request(model, count):
    """ModelInferRequest{model_name, inputs: USER_ID [1], ITEM_IDS [count]} for the
    misbehaving plugin (13 items make it misbehave, as for Score)."""
    from generated.inference import grpc_service_pb2 as inference_pb2

    Input = inference_pb2.ModelInferRequest.InferInputTensor
    return inference_pb2.ModelInferRequest(model_name=model, inputs=[
        Input(name="USER_ID", datatype="BYTES", shape=[1], contents=inference_pb2.InferTensorContents(bytes_contents=[b"196"])),
        Input(name="ITEM_IDS", datatype="BYTES", shape=[count], contents=inference_pb2.InferTensorContents(
            bytes_contents=[str(item).encode() for item in range(1, count + 1)])),
    ]).SerializeToString()


@pytest.mark.skipif(use_reference(), reason="curec.v1 is served by curecd only")
def test_a_hanging_isolated_plugin_holds_only_its_own_calls(server_address):
    """An isolated plugin that never returns holds nothing but its own calls: with Score and
    ModelInfer calls to it outstanding on one HTTP/2 connection, calls on that same
    connection to an in-process plugin and further calls to the isolated one are answered
    while the hanging ones still wait; those end UNAVAILABLE at the instance's time limit,
    whose kill restarts the worker."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    hanging, calm = "isolated_hanging", "in_process_calm"
    status, message = _unary_raw(server_address, LOAD_PLUGIN_PATH, _load_request(
        hanging, "CURecTestMisbehaving", b"hang", isolation=2, call_time_limit_ms=15000))
    assert status == GRPC_OK, message
    status, message = _unary_raw(server_address, LOAD_PLUGIN_PATH, _load_request(calm, "CURecTestMisbehaving"))
    assert status == GRPC_OK, message
    channel = new_channel(server_address)
    try:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="plugin/" + hanging), timeout=120)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        score, infer = _raw_method(channel, SCORE_PATH), _raw_method(channel, MODEL_INFER_PATH)
        # Three of the worker's four channels hang; the fourth stays free for calls that do not.
        pending = [score.future(_score_with(hanging, 13), timeout=120),
                   infer.future(_infer_request(hanging, 13), timeout=120),
                   score.future(_score_with(hanging, 13), timeout=120)]
        for _ in range(20):
            score(_score_with(calm, 2), timeout=60)
            infer(_infer_request(calm, 2), timeout=60)
        score(_score_with(hanging, 2), timeout=60)
        infer(_infer_request(hanging, 2), timeout=60)
        assert not any(call.done() for call in pending)
        for call in pending:
            with pytest.raises(grpc.RpcError) as caught:
                call.result()
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            details = caught.value.details() or ""
            # The first to reach the limit kills the worker; the others end with it.
            assert any(words in details for words in ("time limit of 15 s", "stopped during the call", "restarting"))
            assert len(details) < 400, details
        assert any("time limit of 15 s" in (call.exception().details() or "") for call in pending)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        score(_score_with(hanging, 2), timeout=60)
    finally:
        channel.close()
        for name in (hanging, calm):
            _unary_raw(server_address, UNLOAD_PLUGIN_PATH, _pb_bytes(1, name.encode()))


@pytest.mark.skipif(use_reference(), reason="curec.v1 is served by curecd only")
def test_model_readiness_follows_an_isolated_worker(server_address):
    """The Open Inference Protocol tells the truth about an isolated model: ModelReady and its
    RepositoryIndex state are READY while its worker serves, and not once the worker keeps
    crashing (UNAVAILABLE, saying why, and left out of the ready-only index), as its health
    name says; a reload makes it ready again."""
    from generated.inference import grpc_service_pb2 as inference_pb2
    from generated.inference import grpc_service_pb2_grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    name = "isolated_readiness"
    status, message = _unary_raw(server_address, LOAD_PLUGIN_PATH,
                                 _load_request(name, "CURecTestMisbehaving", b"segv", isolation=2))
    assert status == GRPC_OK, message
    channel = new_channel(server_address)
    try:
        oip = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)

        def ready():
            return oip.ModelReady(inference_pb2.ModelReadyRequest(name=name), timeout=CALL_TIMEOUT).ready

        def indexed(only_ready=False):
            models = oip.RepositoryIndex(inference_pb2.RepositoryIndexRequest(ready=only_ready), timeout=CALL_TIMEOUT).models
            return [model for model in models if model.name == name]

        assert ready()
        assert [model.state for model in indexed()] == ["READY"]
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="plugin/" + name), timeout=120)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        # Five stops within a minute mark the worker failed; it is not restarted again.
        for crash in range(5):
            status, message = _unary_raw(server_address, SCORE_PATH, _score_with(name, 13))
            assert status == GRPC_UNAVAILABLE, message
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            if crash < 4:
                assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        assert not ready()
        [model] = indexed()
        assert model.state == "UNAVAILABLE" and "its worker" in model.reason and len(model.reason) < 400, model
        assert indexed(only_ready=True) == []
        status, message = _unary_raw(server_address, RELOAD_PLUGIN_PATH, _pb_bytes(1, name.encode()))
        assert status == GRPC_OK, message
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        assert ready()
        assert [model.state for model in indexed(only_ready=True)] == ["READY"]
    finally:
        channel.close()
        _unary_raw(server_address, UNLOAD_PLUGIN_PATH, _pb_bytes(1, name.encode()))


@pytest.mark.skipif(use_reference(), reason="curec.v1 is served by curecd only")
def test_an_instance_a_train_job_makes_keeps_the_limits_of_its_load(server_address):
    """Load with train, isolation PROCESS and call_time_limit_ms trains the plugin as a job;
    the instance the job serves has that time limit, not the default of ten seconds."""
    name = "isolated_trained"
    body = _load_request(name, "CURecTestMisbehaving", b"hang", isolation=2, call_time_limit_ms=300) + _pb_varint(4, 1)
    channel = new_channel(server_address)
    try:
        status = _raw_method(channel, LOAD_PLUGIN_PATH)(body, timeout=300)
    finally:
        channel.close()
    try:
        assert _length_delimited_field(status, 10), "the instance was not trained by a job"  # PluginStatus.job_id
        status, message = _unary_raw(server_address, SCORE_PATH, _score_with(name, 13))
        assert status == GRPC_UNAVAILABLE, message
        assert "time limit of 300 ms" in message and len(message) < 400, message
    finally:
        _unary_raw(server_address, UNLOAD_PLUGIN_PATH, _pb_bytes(1, name.encode()))


@pytest.mark.parametrize("batching, code, words", [
    (_batching(delay=4_000_000_000), GRPC_INVALID_ARGUMENT, "max_queue_delay_microseconds is 4000000000"),
    (_batching(delay=1_000_001), GRPC_INVALID_ARGUMENT, "at most one second"),
    (_batching(preferred=(0,)), GRPC_INVALID_ARGUMENT, "preferred_batch_size[0] is 0"),
    (_batching(preferred=(8, 4)), GRPC_INVALID_ARGUMENT, "strictly ascending"),
    (_batching(preferred=tuple(range(1, 40))), GRPC_INVALID_ARGUMENT, "at most 16"),
    (_batching(preferred=(4_294_967_295,)), GRPC_INVALID_ARGUMENT, "preferred_batch_size[0]"),
    (_batching(max_batch=1_000_000), GRPC_INVALID_ARGUMENT, "max_batch_size is 1000000"),
    (_batching(max_queue=4_000_000_000), GRPC_INVALID_ARGUMENT, "max_queue_size is 4000000000"),
    # A plugin without a batched entry point (the C popularity plugin): refused, not ignored.
    (_batching(delay=1000), GRPC_FAILED_PRECONDITION, "does not declare a batched scoring entry point"),
])
def test_load_with_hostile_dynamic_batching(server_address, batching, code, words):
    """PluginService.Load with batching settings out of range, absurd delays or for a plugin
    that cannot batch: refused with a short message naming the field; nothing is loaded and
    the daemon keeps serving."""
    body = _pb_bytes(1, b"batched") + _pb_bytes(2, b"CURecPopularity") + _pb_bytes(7, batching)
    status, message = _unary_raw(server_address, LOAD_PLUGIN_PATH, body)
    assert status == code, message
    assert words in message and len(message) < 300
    status, _ = _unary_raw(server_address, HEALTH_PATH, b"")
    assert status == 0


@pytest.mark.skipif(use_reference(), reason="curec.v1 is served by curecd only")
@pytest.mark.parametrize("block, words", [
    ("{max_queue_delay_microseconds: 99999999}", "max_queue_delay_microseconds is 99999999"),
    ("{preferred_batch_size: [16, 2]}", "strictly ascending"),
    ("{max_queue_size: 0}", "max_queue_size is 0"),
    ("{max_batch_size: lots}", "dynamic_batching"),
])
def test_hostile_dynamic_batching_in_the_config_file_is_refused_at_start(tmp_path, block, words):
    """A plugin's dynamic_batching block out of range or of the wrong type in the config
    file: curecd refuses to start, naming it, instead of serving without the batching asked."""
    from interop_support import daemon_command

    config = tmp_path / "curecd.yaml"
    config.write_text("plugins:\n  - name: sasrec\n    library: CURecSASRec\n    dynamic_batching: %s\n" % block)
    command = daemon_command(str(tmp_path / "port"), extra_args=("--config", str(config)))
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert words in output and len(output) < 2000, output
    assert not (tmp_path / "port").exists()
