"""Helpers for the TLS and token suites: throwaway certificates, hashed tokens, a daemon
started with a security configuration, and channels that present them."""

import hashlib
import os
import subprocess
import time

import grpc

from interop_support import CHANNEL_OPTIONS, Daemon

# Tokens the suites use; only their SHA-256 goes into the daemon's configuration.
SCORE_TOKEN = "score-token-for-tests"
ADMIN_TOKEN = "admin-token-for-tests"
EXPIRED_TOKEN = "expired-token-for-tests"
REVOKED_TOKEN = "revoked-token-for-tests"


def token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class PKI:
    """A CA, a server certificate for localhost and 127.0.0.1, a client certificate, and an
    unrelated CA; generated with the openssl CLI into `directory` (nothing is committed)."""

    def __init__(self, directory):
        self.dir = str(directory)
        d = self.dir
        for name in ("ca", "other-ca"):
            _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", name + ".key", "-out", name + ".pem", "-days", "2", "-subj", "/CN=" + name, cwd=d)
        with open(os.path.join(d, "server.ext"), "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        with open(os.path.join(d, "client.ext"), "w") as f:
            f.write("extendedKeyUsage=clientAuth\n")
        for name, ext, subject in (("server", "server.ext", "/CN=localhost"), ("client", "client.ext", "/CN=test client")):
            _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", name + ".key", "-out", name + ".csr", "-subj", subject, cwd=d)
            _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                     "-out", name + ".pem", "-days", "2", "-extfile", ext, cwd=d)

    def path(self, name):
        return os.path.join(self.dir, name)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()


def write_config(path, pki=None, tokens=(), client_ca=False, extra=""):
    """A YAML configuration with TLS from `pki` and `tokens` as (name, token, scopes, expires)."""
    lines = []
    if pki is not None:
        lines += ["tls_cert_file: %s" % pki.path("server.pem"), "tls_key_file: %s" % pki.path("server.key")]
        if client_ca:
            lines.append("tls_client_ca_file: %s" % pki.path("ca.pem"))
    if tokens:
        lines.append("tokens:")
        for name, token, scopes, expires in tokens:
            lines.append("  - name: %s" % name)
            lines.append("    sha256: %s" % token_hash(token))
            lines.append("    scopes: [%s]" % ", ".join(scopes))
            if expires:
                lines.append("    expires: %s" % expires)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n" + extra)
    return path


def start_daemon(config_path, *extra_args):
    return Daemon("--config", config_path, *extra_args).start()


def tls_channel(address, pki, token=None, ca="ca.pem", client_cert=False, host="localhost"):
    """A grpcio channel over TLS trusting `ca`, optionally with a client certificate and a
    bearer token (standard access-token call credentials)."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.read(ca),
        private_key=pki.read("client.key") if client_cert else None,
        certificate_chain=pki.read("client.pem") if client_cert else None,
    )
    if token is not None:
        credentials = grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token))
    port = address.rsplit(":", 1)[1]
    return grpc.secure_channel("%s:%s" % (host, port), credentials, options=CHANNEL_OPTIONS)


def raw_unary(channel, path, request=b"", metadata=None, timeout=10):
    """Calls `path` with raw request bytes (an empty message by default); returns the raw response."""
    call = channel.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    return call(request, timeout=timeout, metadata=metadata)


def status_of(channel, path, request=b"", metadata=None):
    """The status code a call ends with (OK if it succeeds)."""
    try:
        raw_unary(channel, path, request, metadata)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as error:
        return error.code(), error.details()


def wait_for_log(daemon, text, timeout=15):
    """Waits until the daemon's log contains `text` (the event a test expects)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in daemon.log_tail(1 << 20):
            return
        time.sleep(0.05)
    raise AssertionError("the daemon never logged %r:\n%s" % (text, daemon.log_tail()))
