"""Hand-written HTTP/2 framing for the raw-socket tests.

Frames are built and parsed here; only HPACK encoding and decoding of well-formed
header blocks uses the `hpack` package (installed with h2).
"""

import socket
import struct
import time

from hpack import Decoder, Encoder

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20

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


def window_update_frame(stream_id, increment):
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


def grpc_frame(message_bytes, compressed=False):
    """A length-prefixed gRPC message."""
    return struct.pack(">BI", 1 if compressed else 0, len(message_bytes)) + message_bytes


def grpc_messages(data):
    """Splits a response body into its messages; fails on a malformed body."""
    messages = []
    while data:
        assert len(data) >= 5, "truncated message prefix %r" % data
        flag, length = struct.unpack(">BI", data[:5])
        assert flag == 0, "compressed flag set on a response"
        assert len(data) >= 5 + length, "truncated message"
        messages.append(data[5 : 5 + length])
        data = data[5 + length :]
    return messages


def unpadded(received):
    if received.flags & FLAG_PADDED:
        pad = received.payload[0]
        return received.payload[1 : len(received.payload) - pad]
    return received.payload


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

    def __init__(self, address, source=None):
        host, port = address.rsplit(":", 1)
        assert host in ("127.0.0.1", "localhost", "[::1]"), "raw tests talk only to loopback"
        assert source is None or source.startswith("127."), "raw tests talk only from loopback"
        self.authority = address
        self.sock = socket.create_connection(
            (host.strip("[]"), int(port)), timeout=SOCKET_TIMEOUT, source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        # Longest wait for a single read (raise it for calls that compute before answering).
        self.read_timeout = SOCKET_TIMEOUT
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.decoder.max_allowed_table_size = 65536

    def close(self):
        self.sock.close()

    def send(self, data):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as error:
            raise Closed("connection closed while sending: %s" % error)

    def start(self):
        """Client preface and an empty SETTINGS frame."""
        self.send(PREFACE + settings_frame())

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("case deadline passed")
        self.sock.settimeout(min(self.read_timeout, remaining))
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

    def request_headers(self, path, extra=()):
        return [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", self.authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ] + list(extra)

    def headers_frame(self, stream_id, headers, end_stream=False):
        flags = FLAG_END_HEADERS | (FLAG_END_STREAM if end_stream else 0)
        return frame(HEADERS, flags, stream_id, self.encoder.encode(headers))

    def decode_headers(self, received):
        block = received.payload
        if received.flags & FLAG_PADDED:
            pad = block[0]
            block = block[1 : len(block) - pad]
        if received.flags & FLAG_PRIORITY:
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
            elif received.type == DATA:
                # Replenish the connection window for every stream, the stream window
                # only for the stream being read (others stay as the caller left them).
                if received.payload:
                    self.send(window_update_frame(0, len(received.payload)))
                if received.stream_id == stream_id:
                    data += unpadded(received)
                    if received.flags & FLAG_END_STREAM:
                        return header_blocks, data, None
                    if received.payload:
                        self.send(window_update_frame(stream_id, len(received.payload)))
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


def deadline():
    return time.monotonic() + CASE_TIMEOUT


def grpc_status(header_blocks):
    """grpc-status from the trailers (the last header block), as an int."""
    assert header_blocks, "no response headers"
    trailers = dict(header_blocks[-1])
    assert "grpc-status" in trailers, "no grpc-status in final header block: %r" % (header_blocks,)
    return int(trailers["grpc-status"])
