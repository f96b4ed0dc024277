"""Misbehaving peers against the TLS listener and the token check: garbage before the TLS
handshake, handshakes that stall, huge and malformed authorization headers. After each,
the daemon keeps serving a well-behaved TLS client."""

import os
import random
import socket
import time

import grpc
import pytest

from interop_support import use_reference
from security_support import PKI, SCORE_TOKEN, start_daemon, status_of, tls_channel, write_config

pytestmark = pytest.mark.skipif(
    use_reference() or bool(os.environ.get("CURECD_ADDR")),
    reason="starts curecd itself with TLS and tokens",
)

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
EMPTY_CALL = "/grpc.testing.TestService/EmptyCall"
HANDSHAKE_TIMEOUT = 1


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured(pki, tmp_path_factory):
    config = write_config(
        str(tmp_path_factory.mktemp("conf") / "curecd.yaml"), pki, [("ranker", SCORE_TOKEN, ["score"], None)],
        extra="tls_handshake_timeout_seconds: %d\n" % HANDSHAKE_TIMEOUT)
    daemon = start_daemon(config)
    yield daemon
    assert daemon.stop() == 0, daemon.log_tail()


@pytest.fixture(autouse=True)
def still_serves(secured, pki):
    yield
    assert secured.alive(), secured.log_tail()
    started = time.monotonic()
    with tls_channel(secured.address, pki) as channel:
        assert status_of(channel, HEALTH_CHECK)[0] == grpc.StatusCode.OK
    assert time.monotonic() - started < 5


def _connect(address):
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=30)


def _closed_by_server(sock):
    """Reads until the server closes (EOF or reset); True if it did before the socket timeout."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_garbage_before_the_handshake_closes_the_connection(secured):
    rng = random.Random(13)
    with _connect(secured.address) as sock:
        sock.sendall(bytes(rng.randrange(256) for _ in range(4096)))
        assert _closed_by_server(sock)


def test_http2_preface_on_the_tls_port_closes_the_connection(secured):
    with _connect(secured.address) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        assert _closed_by_server(sock)


@pytest.mark.parametrize("sent", [b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"], ids=["silent", "partial-hello"])
def test_a_stalled_handshake_is_closed_after_the_timeout(secured, sent):
    with _connect(secured.address) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        assert _closed_by_server(sock)
        # Closed by the handshake timer, not by anything the peer did.
        assert time.monotonic() - started >= HANDSHAKE_TIMEOUT * 0.5


def test_many_stalled_handshakes_do_not_block_others(secured, pki):
    sockets = [_connect(secured.address) for _ in range(64)]
    try:
        with tls_channel(secured.address, pki) as channel:
            assert status_of(channel, HEALTH_CHECK)[0] == grpc.StatusCode.OK
        for sock in sockets:
            assert _closed_by_server(sock)
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("value", [
    "Basic c2NvcmU6dG9rZW4=",
    "Bearer",
    "bearer-" + SCORE_TOKEN,
    "Bearer " + "x" * 2000,
    "Bearer " + SCORE_TOKEN + "x",
], ids=["basic", "no-token", "no-space", "2000-byte-token", "near-miss"])
def test_malformed_authorization_is_unauthenticated(secured, pki, value):
    with tls_channel(secured.address, pki) as channel:
        code, details = status_of(channel, EMPTY_CALL, metadata=[("authorization", value)])
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert len(details) < 200 and "x" * 100 not in details


def test_huge_authorization_header_is_refused(secured, pki):
    with tls_channel(secured.address, pki) as channel:
        code, _ = status_of(channel, EMPTY_CALL, metadata=[("authorization", "Bearer " + "y" * 60000)])
    assert code != grpc.StatusCode.OK


def test_valid_token_still_passes_after_the_abuse(secured, pki):
    with tls_channel(secured.address, pki, token=SCORE_TOKEN) as channel:
        assert status_of(channel, EMPTY_CALL)[0] == grpc.StatusCode.OK
