"""Drain timeout, refusal of new calls while draining, and idle-connection limits.

Each case starts its own curecd with the flags it needs (skipped with CURECD_ADDR or
INTEROP_REFERENCE=1, which give no control over the process).
"""

import os
import socket
import time

import grpc
import pytest

from generated.grpc_testing import messages_pb2, test_pb2_grpc
from interop_support import Daemon, new_channel, use_reference

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("CURECD_ADDR")) or use_reference(),
    reason="needs to start and signal its own curecd",
)


def kill_if_running(server):
    if server.proc is not None and server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


def slow_stream_request(messages, interval_us):
    return messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=10, interval_us=interval_us) for _ in range(messages)]
    )


def test_drain_timeout_bounds_shutdown():
    server = Daemon("--drain-timeout", "1").start()
    try:
        channel = new_channel(server.address)
        # The first response comes at once, the next two 10 s apart: once the first is read
        # the call is certainly in flight, and draining it fully would take 20 s.
        request = messages_pb2.StreamingOutputCallRequest(response_parameters=[
            messages_pb2.ResponseParameters(size=10),
            messages_pb2.ResponseParameters(size=10, interval_us=10_000_000),
            messages_pb2.ResponseParameters(size=10, interval_us=10_000_000),
        ])
        call = test_pb2_grpc.TestServiceStub(channel).StreamingOutputCall(request, timeout=60)
        next(call)
        started = time.monotonic()
        server.terminate()
        assert server.stop() == 0
        assert time.monotonic() - started < 5, "the drain timeout was not honoured"
        with pytest.raises(grpc.RpcError) as failure:
            list(call)
        assert failure.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL)
        channel.close()
    finally:
        kill_if_running(server)


def test_new_calls_are_refused_while_draining():
    server = Daemon("--drain-timeout", "5").start()
    try:
        channel = new_channel(server.address)
        stub = test_pb2_grpc.TestServiceStub(channel)
        call = stub.StreamingOutputCall(slow_stream_request(2, 1_000_000), timeout=15)
        next(call)
        server.terminate()
        # The server says when it starts draining; wait for that, not for a guessed delay.
        end = time.monotonic() + 10
        while "shutting down" not in server.log_text():
            assert time.monotonic() < end, "no 'shutting down' in the log:\n" + server.log_tail()
            time.sleep(0.01)
        with pytest.raises(grpc.RpcError) as failure:
            stub.UnaryCall(messages_pb2.SimpleRequest(response_size=1), timeout=3)
        assert failure.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        assert len(list(call)) == 1, "the call in flight did not finish during the drain"
        assert server.stop() == 0
        channel.close()
    finally:
        kill_if_running(server)


def test_idle_connection_gets_goaway_and_is_closed():
    server = Daemon("--idle-timeout", "1").start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        received = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        sock.close()
        types = []
        offset = 0
        while offset + 9 <= len(received):
            length = int.from_bytes(received[offset:offset + 3], "big")
            types.append(received[offset + 3])
            offset += 9 + length
        assert 7 in types, "no GOAWAY before the idle connection closed (frame types %s)" % types
        channel = new_channel(server.address)
        stub = test_pb2_grpc.TestServiceStub(channel)
        assert stub.UnaryCall(messages_pb2.SimpleRequest(response_size=5), timeout=5).payload.body == bytes(5)
        channel.close()
        server.terminate()
        assert server.stop() == 0
    finally:
        kill_if_running(server)
