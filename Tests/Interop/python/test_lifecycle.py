"""Start-up and SIGTERM behaviour, each case on a server process of its own."""

import os
import re
import subprocess
import time

import grpc
import pytest

from generated.grpc_testing import empty_pb2, messages_pb2, test_pb2_grpc
from interop_support import CALL_TIMEOUT, Daemon, daemon_command, new_channel, use_reference
from raw_h2 import (
    DATA,
    FLAG_END_STREAM,
    GOAWAY,
    NO_ERROR,
    Closed,
    RawConnection,
    deadline,
    frame,
    grpc_frame,
    grpc_status,
)

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("CURECD_ADDR")), reason="needs to start its own server (CURECD_ADDR is set)"
)


@pytest.fixture
def own_daemon():
    server = Daemon().start()
    yield server
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


def test_port_file_and_sigterm_when_idle(own_daemon):
    with open(own_daemon.port_file) as f:
        text = f.read()
    assert re.fullmatch(r"[1-9][0-9]*\n", text), repr(text)
    channel = new_channel(own_daemon.address)
    try:
        stub = test_pb2_grpc.TestServiceStub(channel)
        stub.EmptyCall(empty_pb2.Empty(), timeout=CALL_TIMEOUT)
    finally:
        channel.close()
    started = time.monotonic()
    assert own_daemon.stop() == 0, own_daemon.log_tail()
    assert time.monotonic() - started < 5.0


def test_sigterm_with_idle_open_connection(own_daemon):
    """An idle client connection must not keep the server from stopping promptly."""
    channel = new_channel(own_daemon.address)
    try:
        stub = test_pb2_grpc.TestServiceStub(channel)
        stub.EmptyCall(empty_pb2.Empty(), timeout=CALL_TIMEOUT)
        started = time.monotonic()
        assert own_daemon.stop() == 0, own_daemon.log_tail()
        assert time.monotonic() - started < 5.0
    finally:
        channel.close()


def test_sigterm_lets_inflight_call_finish(own_daemon):
    channel = new_channel(own_daemon.address)
    try:
        stub = test_pb2_grpc.TestServiceStub(channel)
        request = messages_pb2.StreamingOutputCallRequest(
            response_parameters=[messages_pb2.ResponseParameters(size=100, interval_us=500_000) for _ in range(5)]
        )
        responses = stub.StreamingOutputCall(request, timeout=CALL_TIMEOUT)
        assert len(next(responses).payload.body) == 100
        own_daemon.terminate()  # SIGTERM
        # Soon, new connections are no longer served while the call drains.
        refused_at = None
        started = time.monotonic()
        while time.monotonic() - started < 1.5:
            late = new_channel(own_daemon.address)
            try:
                test_pb2_grpc.TestServiceStub(late).EmptyCall(empty_pb2.Empty(), timeout=0.3)
            except grpc.RpcError as error:
                # Refused connection or GOAWAY: UNAVAILABLE; a reset stream: CANCELLED
                # (grpc C-core); a connection nobody answers: DEADLINE_EXCEEDED.
                assert error.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ), error
                refused_at = time.monotonic() - started
                break
            finally:
                late.close()
            time.sleep(0.1)
        assert refused_at is not None, "new calls still served 1.5 s after SIGTERM"
        rest = list(responses)
        assert [len(r.payload.body) for r in rest] == [100] * 4
        assert responses.code() == grpc.StatusCode.OK
    finally:
        channel.close()
    assert own_daemon.stop() == 0, own_daemon.log_tail()


def test_sigterm_sends_goaway_to_idle_connection(own_daemon):
    conn = RawConnection(own_daemon.address)
    try:
        conn.start()
        conn.send(conn.headers_frame(1, conn.request_headers("/grpc.testing.TestService/EmptyCall")) + frame(DATA, FLAG_END_STREAM, 1, grpc_frame(b"")))
        header_blocks, data, rst = conn.read_response(1, deadline())
        assert grpc_status(header_blocks) == 0
        own_daemon.terminate()  # SIGTERM
        goaway = None
        end = deadline()
        try:
            while True:
                received = conn.read_frame(end)
                if received.type == GOAWAY:
                    goaway = received
        except Closed:
            pass
        assert goaway is not None, "connection closed without GOAWAY"
        assert goaway.goaway_error() == NO_ERROR, "GOAWAY error %#x" % goaway.goaway_error()
    finally:
        conn.close()
    assert own_daemon.stop() == 0, own_daemon.log_tail()


LEVELS = "log_level must be one of trace, debug, info, notice, warning, error, critical"


@pytest.mark.skipif(use_reference(), reason="curecd's configuration")
@pytest.mark.parametrize("source", ["flag", "environment", "file", "huge-file-value", "unknown-key"])
def test_bad_settings_stop_the_start_with_a_clear_error(tmp_path, source):
    """A bad setting, whichever source gives it, stops curecd before it listens, with one
    short message naming the setting, what it must be and where the value came from."""
    port_file = tmp_path / "port"
    command = daemon_command(str(port_file))
    environment = dict(os.environ)
    config = tmp_path / "curecd.yaml"
    if source == "flag":
        command += ["--log-level", "loud"]
        expected = LEVELS + ", not 'loud' (from flag --log-level)"
    elif source == "environment":
        environment["CUREC_LOG_LEVEL"] = "loud"
        expected = LEVELS + ", not 'loud' (from environment variable CUREC_LOG_LEVEL)"
    elif source == "file":
        config.write_text("log_level: loud\n")
        command += ["--config", str(config)]
        expected = LEVELS + ", not 'loud' (from config file %s)" % config
    elif source == "huge-file-value":
        config.write_text("log_level: %s\n" % ("x" * 200000))
        command += ["--config", str(config)]
        expected = LEVELS
    else:
        config.write_text("%s: 1\n" % ("k" * 500))
        command += ["--config", str(config)]
        expected = "unknown key"
    # The process ending is the event waited for; the timeout only keeps a hang from blocking the suite.
    result = subprocess.run(command, env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
    assert len(result.stderr) < 2000, result.stderr[:500]
    assert not port_file.exists()
