"""TLS, bearer tokens and the admin socket, seen by grpcio with its standard credentials.

Each case starts its own curecd with a security configuration (certificates generated for
the session by the openssl CLI) and checks the status a client gets: no token, a wrong
scope, an expired or revoked token, plain text to a TLS port, TLS with a wrong CA, mutual
TLS without a client certificate, administration on the main listener.
"""

import os
import signal
import subprocess

import grpc
import pytest

from generated.grpc_testing import empty_pb2, test_pb2_grpc
from interop_support import CALL_TIMEOUT, REPO_ROOT, daemon_command, new_channel, use_reference
from security_support import (
    ADMIN_TOKEN,
    EXPIRED_TOKEN,
    PKI,
    REVOKED_TOKEN,
    SCORE_TOKEN,
    start_daemon,
    status_of,
    tls_channel,
    wait_for_log,
    write_config,
)

pytestmark = pytest.mark.skipif(
    use_reference() or bool(os.environ.get("CURECD_ADDR")),
    reason="starts curecd itself with TLS and tokens",
)

PLUGIN_LIST = "/curec.v1.PluginService/List"
RECOMMEND = "/curec.v1.RecommendService/Recommend"
EMPTY_CALL = "/grpc.testing.TestService/EmptyCall"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"

TOKENS = [
    ("ranker", SCORE_TOKEN, ["score"], None),
    ("operator", ADMIN_TOKEN, ["admin", "jobs"], None),
    ("old", EXPIRED_TOKEN, ["score"], "2001-01-01T00:00:00Z"),
    ("leaver", REVOKED_TOKEN, ["score", "admin"], None),
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured(pki, tmp_path_factory):
    """curecd with TLS and the tokens above."""
    config = write_config(str(tmp_path_factory.mktemp("conf") / "curecd.yaml"), pki, TOKENS)
    daemon = start_daemon(config)
    daemon.config_path = config
    yield daemon
    assert daemon.stop() == 0, daemon.log_tail()


def test_no_token_is_unauthenticated(secured, pki):
    with tls_channel(secured.address, pki) as channel:
        code, details = status_of(channel, RECOMMEND)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "bearer token" in details


def test_unknown_token_is_unauthenticated(secured, pki):
    with tls_channel(secured.address, pki, token="not-a-token") as channel:
        assert status_of(channel, EMPTY_CALL)[0] == grpc.StatusCode.UNAUTHENTICATED


def test_token_with_the_scope_reaches_the_method(secured, pki):
    with tls_channel(secured.address, pki, token=SCORE_TOKEN) as channel:
        code, _ = status_of(channel, RECOMMEND)
        # Past authorization: the handler's own answer (an empty request is not a valid one).
        assert code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
        stub = test_pb2_grpc.TestServiceStub(channel)
        assert stub.EmptyCall(empty_pb2.Empty(), timeout=CALL_TIMEOUT) == empty_pb2.Empty()


def test_wrong_scope_is_permission_denied(secured, pki):
    with tls_channel(secured.address, pki, token=SCORE_TOKEN) as channel:
        code, details = status_of(channel, PLUGIN_LIST)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "admin" in details and SCORE_TOKEN not in details
    with tls_channel(secured.address, pki, token=ADMIN_TOKEN) as channel:
        assert status_of(channel, PLUGIN_LIST)[0] == grpc.StatusCode.OK


def test_expired_token_is_unauthenticated(secured, pki):
    with tls_channel(secured.address, pki, token=EXPIRED_TOKEN) as channel:
        code, details = status_of(channel, RECOMMEND)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in details


def test_health_is_open_without_a_token(secured, pki):
    with tls_channel(secured.address, pki) as channel:
        assert status_of(channel, HEALTH_CHECK)[0] == grpc.StatusCode.OK


def test_revoked_token_is_unauthenticated_after_sighup(secured, pki):
    with tls_channel(secured.address, pki, token=REVOKED_TOKEN) as channel:
        assert status_of(channel, PLUGIN_LIST)[0] == grpc.StatusCode.OK
    write_config(secured.config_path, pki, [t for t in TOKENS if t[1] != REVOKED_TOKEN])
    secured.proc.send_signal(signal.SIGHUP)
    wait_for_log(secured, "reloaded bearer tokens")
    with tls_channel(secured.address, pki, token=REVOKED_TOKEN) as channel:
        code, details = status_of(channel, PLUGIN_LIST)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in details
    with tls_channel(secured.address, pki, token=ADMIN_TOKEN) as channel:
        assert status_of(channel, PLUGIN_LIST)[0] == grpc.StatusCode.OK


def test_plain_text_to_the_tls_port_is_unavailable(secured):
    channel = new_channel(secured.address)
    try:
        assert status_of(channel, HEALTH_CHECK)[0] == grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()


def test_tls_with_a_wrong_ca_is_unavailable(secured, pki):
    with tls_channel(secured.address, pki, ca="other-ca.pem") as channel:
        assert status_of(channel, HEALTH_CHECK)[0] == grpc.StatusCode.UNAVAILABLE


def test_tls_by_ip_address_matches_the_certificate(secured, pki):
    with tls_channel(secured.address, pki, host="127.0.0.1") as channel:
        assert status_of(channel, HEALTH_CHECK)[0] == grpc.StatusCode.OK


def test_mutual_tls_needs_a_client_certificate(pki, tmp_path):
    config = write_config(str(tmp_path / "curecd.yaml"), pki, client_ca=True)
    daemon = start_daemon(config)
    try:
        with tls_channel(daemon.address, pki) as channel:
            assert status_of(channel, HEALTH_CHECK)[0] == grpc.StatusCode.UNAVAILABLE
        with tls_channel(daemon.address, pki, client_cert=True) as channel:
            assert status_of(channel, PLUGIN_LIST)[0] == grpc.StatusCode.OK
    finally:
        assert daemon.stop() == 0, daemon.log_tail()


def test_admin_methods_live_on_the_admin_socket(pki, tmp_path):
    socket_path = str(tmp_path / "admin.sock")
    config = write_config(str(tmp_path / "curecd.yaml"), pki, TOKENS, extra="admin_socket: %s\n" % socket_path)
    daemon = start_daemon(config)
    try:
        with tls_channel(daemon.address, pki, token=ADMIN_TOKEN) as channel:
            code, details = status_of(channel, PLUGIN_LIST)
            assert code == grpc.StatusCode.PERMISSION_DENIED and "admin socket" in details
            # Reading jobs stays on the main listener.
            assert status_of(channel, "/curec.v1.JobService/List")[0] == grpc.StatusCode.OK
        assert oct(os.stat(socket_path).st_mode & 0o777) == "0o600"
        channel = grpc.insecure_channel("unix:" + socket_path)
        try:
            assert status_of(channel, PLUGIN_LIST)[0] == grpc.StatusCode.OK
        finally:
            channel.close()
    finally:
        assert daemon.stop() == 0, daemon.log_tail()
    # A graceful stop removes the socket file.
    assert not os.path.exists(socket_path)


def test_the_admin_socket_is_outside_the_connection_limits_and_not_taken_over(pki, tmp_path):
    """A flood of the main listener cannot lock the operator out of the admin socket, and a
    second daemon configured with the same socket refuses to start instead of taking it."""
    socket_path = str(tmp_path / "admin.sock")
    config = write_config(str(tmp_path / "curecd.yaml"), pki, TOKENS,
                          extra="admin_socket: %s\nmax_connections_per_peer: 1\n" % socket_path)
    daemon = start_daemon(config)
    try:
        with tls_channel(daemon.address, pki, token=SCORE_TOKEN) as held:
            # The one connection 127.0.0.1 may hold on the main listener.
            assert status_of(held, HEALTH_CHECK)[0] == grpc.StatusCode.OK
            admins = [grpc.insecure_channel("unix:" + socket_path) for _ in range(3)]
            try:
                for channel in admins:
                    assert status_of(channel, PLUGIN_LIST)[0] == grpc.StatusCode.OK
            finally:
                for channel in admins:
                    channel.close()
        second = subprocess.run(daemon_command(str(tmp_path / "port2"), extra_args=["--config", config]),
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL)
        assert second.returncode != 0
        assert "another process is serving on this socket" in second.stderr + second.stdout
        # The first daemon still answers on its socket.
        channel = grpc.insecure_channel("unix:" + socket_path)
        try:
            assert status_of(channel, PLUGIN_LIST)[0] == grpc.StatusCode.OK
        finally:
            channel.close()
    finally:
        assert daemon.stop() == 0, daemon.log_tail()


def _run_to_exit(args, tmp_path):
    command = daemon_command(str(tmp_path / "port"), listen="0.0.0.0:0", extra_args=args)
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_non_loopback_without_tls_and_tokens_refuses_to_start(tmp_path):
    result = _run_to_exit([], tmp_path)
    assert result.returncode != 0
    assert "not a loopback address" in result.stderr and "--insecure" in result.stderr
    assert not os.path.exists(tmp_path / "port")


def test_non_loopback_with_insecure_starts_with_a_warning(tmp_path):
    from interop_support import Daemon

    daemon = Daemon("--listen", "0.0.0.0:0", "--insecure")
    daemon.start()
    try:
        wait_for_log(daemon, "INSECURE")
    finally:
        assert daemon.stop() == 0, daemon.log_tail()


def _curec(*args, env=None, stdin=None):
    binary = os.path.join(REPO_ROOT, os.environ.get("CUREC") or ".build/debug/curec")
    if not os.access(binary, os.X_OK):
        pytest.skip("no curec CLI at %s" % binary)
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, input=stdin,
                          env={**os.environ, **(env or {})})


def test_cli_token_hash_is_the_sha256_of_the_token():
    import hashlib

    result = _curec("token", "hash", stdin=SCORE_TOKEN + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == hashlib.sha256(SCORE_TOKEN.encode()).hexdigest()
    made = _curec("token", "new", "--name", "ranker", "--scopes", "score,generate")
    token = made.stdout.split("token: ", 1)[1].split()[0]
    assert hashlib.sha256(token.encode()).hexdigest() in made.stdout and "scopes: [score, generate]" in made.stdout


def test_cli_over_tls_with_a_token(secured, pki, tmp_path):
    base = ["--address", secured.address, "--tls-ca", pki.path("ca.pem")]
    assert _curec("health", *base).stdout.strip() == "SERVING"
    refused = _curec("plugins", "list", *base)
    assert refused.returncode != 0 and "UNAUTHENTICATED" in refused.stderr
    token_file = tmp_path / "token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    assert _curec("plugins", "list", *base, "--token-file", str(token_file)).returncode == 0
    assert _curec("plugins", "list", *base, env={"CUREC_TOKEN": ADMIN_TOKEN}).returncode == 0
    wrong = _curec("plugins", "list", *base, env={"CUREC_TOKEN": SCORE_TOKEN})
    assert "PERMISSION_DENIED" in wrong.stderr
    untrusted = _curec("health", "--address", secured.address, "--tls-ca", pki.path("other-ca.pem"))
    assert untrusted.returncode != 0 and "UNAVAILABLE" in untrusted.stderr
    plain = _curec("health", "--address", secured.address)
    assert plain.returncode != 0 and "UNAVAILABLE" in plain.stderr


def test_cli_on_the_admin_socket(pki, tmp_path):
    socket_path = str(tmp_path / "admin.sock")
    config = write_config(str(tmp_path / "curecd.yaml"), pki, TOKENS, extra="admin_socket: %s\n" % socket_path)
    daemon = start_daemon(config)
    try:
        listed = _curec("plugins", "list", "--address", "unix:" + socket_path)
        assert listed.returncode == 0 and "NAME" in listed.stdout, listed.stderr
    finally:
        assert daemon.stop() == 0, daemon.log_tail()
