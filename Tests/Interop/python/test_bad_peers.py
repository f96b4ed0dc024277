"""Misbehaving peers on raw sockets: the server must reject them cleanly and keep serving.

Frames are written by hand; only HPACK encoding and decoding of well-formed header
blocks uses the `hpack` package (installed with h2). After every case a normal grpcio
call on a new connection must succeed.
"""

import random
import shutil
import socket
import struct
import subprocess
import time

import pytest
from hpack import Decoder, Encoder, HPACKError

from generated.grpc_testing import empty_pb2, test_pb2_grpc
from interop_support import CALL_TIMEOUT, new_channel, use_reference

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4

NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
CANCEL = 0x8
COMPRESSION_ERROR = 0x9

GRPC_OK = 0
GRPC_RESOURCE_EXHAUSTED = 8

SOCKET_TIMEOUT = 5.0  # no single read may wait longer than this
CASE_TIMEOUT = 10.0  # a case that sees no verdict from the server within this fails


def frame(frame_type, flags, stream_id, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", frame_type, flags, stream_id & 0x7FFFFFFF) + payload


def settings_frame(ack=False):
    return frame(SETTINGS, FLAG_ACK if ack else 0, 0)


def rst_stream_frame(stream_id, code=CANCEL):
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


class Frame:
    def __init__(self, frame_type, flags, stream_id, payload):
        self.type = frame_type
        self.flags = flags
        self.stream_id = stream_id
        self.payload = payload

    def goaway_error(self):
        last_stream, code = struct.unpack(">II", self.payload[:8])
        return code

    def __repr__(self):
        return "Frame(type=%d, flags=%#x, stream=%d, %d bytes)" % (self.type, self.flags, self.stream_id, len(self.payload))


class Closed(Exception):
    """The server closed (or reset) the connection."""


class RawConnection:
    """A minimal hand-driven HTTP/2 client connection to the server under test."""

    def __init__(self, address):
        host, port = address.rsplit(":", 1)
        assert host in ("127.0.0.1", "localhost", "[::1]"), "raw tests talk only to loopback"
        self.authority = address
        self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=SOCKET_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.decoder.max_allowed_table_size = 65536

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def start(self):
        """Client preface and an empty SETTINGS frame."""
        self.send(PREFACE + settings_frame())

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("case deadline passed")
        self.sock.settimeout(min(SOCKET_TIMEOUT, remaining))
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            raise Closed("connection reset")
        if not chunk:
            raise Closed("connection closed")
        self.buffer += chunk

    def read_raw_until_closed(self, deadline):
        """(bytes received, whether the server closed) once it closes or the deadline passes."""
        try:
            while True:
                self._fill(deadline)
        except Closed:
            return self.buffer, True
        except socket.timeout:
            return self.buffer, False

    def read_frame(self, deadline):
        while len(self.buffer) < 9:
            self._fill(deadline)
        length = struct.unpack(">I", b"\0" + self.buffer[:3])[0]
        frame_type, flags, stream_id = struct.unpack(">BBI", self.buffer[3:9])
        while len(self.buffer) < 9 + length:
            self._fill(deadline)
        payload = self.buffer[9 : 9 + length]
        self.buffer = self.buffer[9 + length :]
        received = Frame(frame_type, flags, stream_id & 0x7FFFFFFF, payload)
        # Keep the connection healthy while reading.
        if frame_type == SETTINGS and not flags & FLAG_ACK:
            self.send(settings_frame(ack=True))
        elif frame_type == PING and not flags & FLAG_ACK:
            self.send(frame(PING, FLAG_ACK, 0, payload))
        return received

    def request_headers(self, path):
        return [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", self.authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]

    def headers_frame(self, stream_id, headers, end_stream=False):
        flags = FLAG_END_HEADERS | (FLAG_END_STREAM if end_stream else 0)
        return frame(HEADERS, flags, stream_id, self.encoder.encode(headers))

    def decode_headers(self, received):
        block = received.payload
        if received.flags & 0x8:  # PADDED
            pad = block[0]
            block = block[1 : len(block) - pad]
        if received.flags & 0x20:  # PRIORITY
            block = block[5:]
        return [(k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v) for k, v in self.decoder.decode(block, raw=True)]

    def read_response(self, stream_id, deadline):
        """Header blocks and DATA of one stream until it ends (END_STREAM or RST_STREAM).

        Returns (list of header lists, data bytes, rst code or None).
        """
        header_blocks = []
        data = b""
        while True:
            received = self.read_frame(deadline)
            if received.type == GOAWAY:
                raise AssertionError("unexpected GOAWAY (error %#x, %r)" % (received.goaway_error(), received.payload[8:]))
            if received.type == HEADERS:
                # Headers must be decoded in order on the connection, whatever the stream.
                decoded = self.decode_headers(received)
                assert received.flags & FLAG_END_HEADERS, "CONTINUATION not expected for small header blocks"
                if received.stream_id == stream_id:
                    header_blocks.append(decoded)
                    if received.flags & FLAG_END_STREAM:
                        return header_blocks, data, None
            elif received.type == DATA and received.stream_id == stream_id:
                data += received.payload
                if received.payload:
                    self.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(received.payload))))
                if received.flags & FLAG_END_STREAM:
                    return header_blocks, data, None
            elif received.type == RST_STREAM and received.stream_id == stream_id:
                return header_blocks, data, struct.unpack(">I", received.payload)[0]


def read_until_goaway_or_close(conn, deadline):
    """Frames until a GOAWAY arrives or the connection closes; returns (frames, goaway or None)."""
    frames = []
    try:
        while True:
            received = conn.read_frame(deadline)
            frames.append(received)
            if received.type == GOAWAY:
                return frames, received
    except Closed:
        return frames, None


@pytest.fixture
def raw(server_address):
    conn = RawConnection(server_address)
    yield conn
    conn.close()


@pytest.fixture(autouse=True)
def server_still_serves(server_address):
    """After each misbehaving peer, a well-behaved client gets service on a new connection."""
    yield
    channel = new_channel(server_address)
    try:
        stub = test_pb2_grpc.TestServiceStub(channel)
        assert stub.EmptyCall(empty_pb2.Empty(), timeout=CALL_TIMEOUT) == empty_pb2.Empty()
    finally:
        channel.close()


def deadline():
    return time.monotonic() + CASE_TIMEOUT


def grpc_status(header_blocks):
    """grpc-status from the trailers (the last header block), as an int."""
    assert header_blocks, "no response headers"
    trailers = dict(header_blocks[-1])
    assert "grpc-status" in trailers, "no grpc-status in final header block: %r" % (header_blocks,)
    return int(trailers["grpc-status"])


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
