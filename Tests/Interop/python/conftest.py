"""Fixtures for the interop suites.

By default one curecd process (env CURECD, else .build/debug/curecd) is started for the
whole session with --enable-interop-testing and stopped with SIGTERM at the end, which
must make it exit with status 0. With INTEROP_REFERENCE=1 the grpcio reference server
(reference_server.py) is started instead. With CURECD_ADDR=host:port an already running
server is used and nothing is started or stopped.
"""

import os

import pytest

from interop_support import Daemon, new_channel, use_reference


def pytest_report_header(config):
    if os.environ.get("CURECD_ADDR"):
        return "interop target: %s (CURECD_ADDR)" % os.environ["CURECD_ADDR"]
    if use_reference():
        return "interop target: grpcio reference server (INTEROP_REFERENCE=1)"
    return "interop target: %s" % (os.environ.get("CURECD") or ".build/debug/curecd")


@pytest.fixture(scope="session")
def daemon():
    """The running server; `daemon.proc` is None when CURECD_ADDR is used."""
    address = os.environ.get("CURECD_ADDR")
    if address:
        class External:
            proc = None

            def alive(self):
                return True

            def log_tail(self, limit=4000):
                return ""

        external = External()
        external.address = address
        yield external
        return
    server = Daemon().start()
    yield server
    status = server.stop()
    assert status == 0, "server exited with status %r after SIGTERM (None: had to be killed)\n%s" % (
        status,
        server.log_tail(),
    )


@pytest.fixture(scope="session")
def server_address(daemon):
    return daemon.address


@pytest.fixture
def channel(server_address):
    ch = new_channel(server_address)
    yield ch
    ch.close()


@pytest.fixture(autouse=True)
def _server_still_running(request):
    """Fails the case that made a locally started server die, with its log."""
    yield
    if "daemon" not in request.fixturenames:
        return
    server = request.getfixturevalue("daemon")
    if not server.alive():
        pytest.fail("the server process died during this case:\n%s" % server.log_tail())
