"""The Prometheus endpoint (`--metrics-listen`): it counts what the daemon serves, and hostile
HTTP peers (slow, oversized, malformed, floods) get a short error or a close while the
daemon keeps serving gRPC and metrics."""

import os
import random

import grpc
import pytest

from interop_support import CALL_TIMEOUT, new_channel, use_reference
from metrics_support import connect, exchange, read_until_closed, sample, scrape, start_metrics_daemon

pytestmark = pytest.mark.skipif(
    use_reference() or bool(os.environ.get("CURECD_ADDR")),
    reason="starts curecd itself with --metrics-listen",
)

EMPTY_CALL = "/grpc.testing.TestService/EmptyCall"
UNARY_CALL = "/grpc.testing.TestService/UnaryCall"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
# SimpleRequest{response_status: {code: 5}}: the test service ends the call with NOT_FOUND.
NOT_FOUND_REQUEST = b"\x3a\x02\x08\x05"
# The endpoint's bounds (docs/metrics.md).
MAX_HEAD = 8 * 1024
MAX_CONNECTIONS = 16


@pytest.fixture(scope="module")
def served():
    daemon, port = start_metrics_daemon()
    yield daemon, port
    assert daemon.stop() == 0, daemon.log_tail()


@pytest.fixture(autouse=True)
def still_serves(served):
    yield
    daemon, port = served
    assert daemon.alive(), daemon.log_tail()
    with new_channel(daemon.address) as channel:
        channel.unary_unary(HEALTH_CHECK)(b"", timeout=CALL_TIMEOUT)
    assert "curec_open_connections" in scrape(port)


def _labels(method):
    return {"service": "grpc.testing.TestService", "method": method}


def test_calls_are_counted_by_method_and_status(served):
    daemon, port = served
    before = scrape(port)
    ok_before = sample(before, "curec_rpc_request_success_total", **_labels("EmptyCall")) or 0
    with new_channel(daemon.address) as channel:
        for _ in range(5):
            channel.unary_unary(EMPTY_CALL)(b"", timeout=CALL_TIMEOUT)
        with pytest.raises(grpc.RpcError) as failed:
            channel.unary_unary(UNARY_CALL)(NOT_FOUND_REQUEST, timeout=CALL_TIMEOUT)
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    text = scrape(port)
    assert sample(text, "curec_rpc_request_success_total", **_labels("EmptyCall")) == ok_before + 5
    assert sample(text, "curec_rpc_request_failure_total", code="NOT_FOUND", **_labels("UnaryCall")) >= 1
    assert sample(text, "curec_rpc_request_duration_seconds_count", **_labels("EmptyCall")) >= 5
    assert sample(text, "curec_rpc_in_flight", **_labels("EmptyCall")) == 0
    assert sample(text, "process_resident_memory_bytes") > 1e6


def test_other_methods_paths_and_versions_are_refused(served):
    _, port = served
    assert exchange(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").startswith(b"HTTP/1.1 405 ")
    assert exchange(port, b"GET /../../etc/passwd HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    assert exchange(port, b"GET /metrics HTTP/9.9\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert exchange(port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_bytes_get_an_error_or_a_close(served, seed):
    _, port = served
    rng = random.Random(seed)
    garbage = bytes(rng.randrange(256) for _ in range(3000)) + b"\r\n\r\n"
    response = exchange(port, garbage)
    assert response.startswith(b"HTTP/1.1 400 ") or response.startswith(b"HTTP/1.1 404 ")
    assert garbage[:64] not in response


def test_an_oversized_head_is_refused_without_echo(served):
    _, port = served
    filler = b"Z" * (4 * MAX_HEAD)
    response = exchange(port, b"GET /metrics HTTP/1.1\r\nX-Fill: " + filler + b"\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 431 ")
    assert b"ZZZZ" not in response


def test_a_slow_peer_times_out_and_does_not_block_scrapes(served):
    _, port = served
    with connect(port) as slow:
        slow.sendall(b"GET /metr")
        # Served while the slow peer holds its connection.
        assert "curec_rpc_in_flight" in scrape(port)
        assert read_until_closed(slow).startswith(b"HTTP/1.1 408 ")


def test_a_connection_flood_is_bounded(served):
    _, port = served
    sockets = [connect(port) for _ in range(MAX_CONNECTIONS + 24)]
    try:
        responses = [read_until_closed(sock) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    timed_out = [r for r in responses if r.startswith(b"HTTP/1.1 408 ")]
    closed = [r for r in responses if r == b""]
    # Those over the bound are closed on accept; the others time out, none is served.
    assert len(timed_out) <= MAX_CONNECTIONS
    assert len(closed) >= 24
    assert len(timed_out) + len(closed) == len(responses)
