"""The client over TLS with bearer tokens, against a curecd started here with a throwaway
CA (openssl CLI), two tokens and an admin socket."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import tempfile
import time

import grpc
import pytest

from curec_client import Client, CurecError

from conftest import REPO_ROOT, curecd_binary

pytestmark = pytest.mark.skipif(bool(os.environ.get("CURECD_ADDR")), reason="starts its own curecd with TLS")

JOBS_TOKEN = "jobs-reader-token"
SCORE_TOKEN = "score-only-token"


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def secured():
    work = tempfile.mkdtemp(prefix="curec-client-tls-")
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ca", cwd=work)
    for name, ext in (("server", "subjectAltName=DNS:localhost,IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        with open(os.path.join(work, name + ".ext"), "w") as f:
            f.write(ext + "\n")
        _openssl("req", *key, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=work)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext", cwd=work)
    socket_path = os.path.join(work, "admin.sock")
    config = os.path.join(work, "curecd.yaml")
    with open(config, "w") as f:
        f.write("tls_cert_file: %s/server.pem\ntls_key_file: %s/server.key\ntls_client_ca_file: %s/ca.pem\n"
                "admin_socket: %s\ntokens:\n" % (work, work, work, socket_path))
        for name, token, scope in (("reader", JOBS_TOKEN, "jobs"), ("ranker", SCORE_TOKEN, "score")):
            f.write("  - {name: %s, sha256: %s, scopes: [%s]}\n" % (name, hashlib.sha256(token.encode()).hexdigest(), scope))
    port_file = os.path.join(work, "port")
    log = open(os.path.join(work, "curecd.log"), "wb")
    proc = subprocess.Popen(
        [curecd_binary(), "--config", config, "--listen", "127.0.0.1:0", "--port-file", port_file,
         "--data-dir", os.path.join(work, "data"), "--no-plugins"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT)
    deadline = time.monotonic() + 60
    while not (os.path.exists(port_file) and open(port_file).read().endswith("\n")):
        assert proc.poll() is None and time.monotonic() < deadline, open(log.name).read()[-4000:]
        time.sleep(0.05)
    port = int(open(port_file).read())
    yield {"address": "localhost:%d" % port, "dir": work, "socket": socket_path}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    log.close()


def _tls(secured, **extra):
    d = secured["dir"]
    return Client(secured["address"], timeout=10, tls_ca=os.path.join(d, "ca.pem"),
                  tls_cert=os.path.join(d, "client.pem"), tls_key=os.path.join(d, "client.key"), **extra)


def test_token_with_scope_lists_jobs(secured):
    with _tls(secured, token=JOBS_TOKEN) as client:
        assert client.list_jobs() == []


def test_without_token_is_unauthenticated(secured):
    with _tls(secured) as client, pytest.raises(CurecError) as raised:
        client.list_jobs()
    assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_wrong_scope_is_permission_denied(secured):
    with _tls(secured, token=SCORE_TOKEN) as client, pytest.raises(CurecError) as raised:
        client.list_jobs()
    assert raised.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_pem_bytes_work_like_paths(secured):
    d = secured["dir"]
    read = lambda name: open(os.path.join(d, name), "rb").read()  # noqa: E731
    with Client(secured["address"], timeout=10, tls_ca=read("ca.pem"), tls_cert=read("client.pem"),
                tls_key=read("client.key"), token=JOBS_TOKEN) as client:
        assert client.list_jobs() == []


def test_mutual_tls_without_a_client_certificate_is_unavailable(secured):
    with Client(secured["address"], timeout=10, tls_ca=os.path.join(secured["dir"], "ca.pem"),
                token=JOBS_TOKEN) as client, pytest.raises(CurecError) as raised:
        client.list_jobs()
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE


def test_admin_socket_serves_administration_without_tls(secured):
    with _tls(secured, token=JOBS_TOKEN) as client, pytest.raises(CurecError) as raised:
        client.plugins()
    assert raised.value.code == grpc.StatusCode.PERMISSION_DENIED
    with Client("unix:" + secured["socket"], timeout=10) as admin:
        assert list(admin.plugins()) == []


def test_token_on_a_cleartext_loopback_channel():
    """A loopback daemon with tokens and no TLS: the client sends the token as metadata."""
    work = tempfile.mkdtemp(prefix="curec-client-token-")
    config = os.path.join(work, "curecd.yaml")
    with open(config, "w") as f:
        f.write("tokens:\n  - {name: reader, sha256: %s, scopes: [jobs]}\n" % hashlib.sha256(JOBS_TOKEN.encode()).hexdigest())
    port_file = os.path.join(work, "port")
    log = open(os.path.join(work, "curecd.log"), "wb")
    proc = subprocess.Popen(
        [curecd_binary(), "--config", config, "--listen", "127.0.0.1:0", "--port-file", port_file,
         "--data-dir", os.path.join(work, "data"), "--no-plugins"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 60
        while not (os.path.exists(port_file) and open(port_file).read().endswith("\n")):
            assert proc.poll() is None and time.monotonic() < deadline, open(log.name).read()[-4000:]
            time.sleep(0.05)
        address = "127.0.0.1:%d" % int(open(port_file).read())
        with Client(address, timeout=10, token=JOBS_TOKEN) as client:
            assert client.list_jobs() == []
        with Client(address, timeout=10) as client, pytest.raises(CurecError) as raised:
            client.list_jobs()
        assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log.close()
