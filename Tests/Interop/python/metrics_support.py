"""Helpers for the metrics endpoint suites: a daemon with `--metrics-listen`, raw HTTP."""

import re
import socket
import time
import urllib.request

from interop_support import STARTUP_TIMEOUT, Daemon

# curecd logs `address=HOST:PORT path=/metrics ... serving metrics`.
_ADDRESS = re.compile(r"address=(\S+):(\d+)")


def start_metrics_daemon(*extra_args):
    """A curecd serving metrics on a port of its choosing; returns (daemon, metrics port)."""
    daemon = Daemon("--metrics-listen", "127.0.0.1:0", *extra_args).start()
    # The endpoint starts before the port file is written, so its log line is there already;
    # poll anyway in case the log is flushed late.
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        for line in daemon.log_text().splitlines():
            match = _ADDRESS.search(line)
            if match and "serving metrics" in line:
                return daemon, int(match.group(2))
        time.sleep(0.05)
    daemon.stop()
    raise RuntimeError("curecd did not log its metrics address:\n" + daemon.log_tail())


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return response.read().decode("utf-8")


def sample(text, name, **labels):
    """The value of the series `name` whose labels include `labels`, or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head != name and not head.startswith(name + "{"):
            continue
        if all('%s="%s"' % (key, val) in head for key, val in labels.items()):
            return float(value)
    return None


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def read_until_closed(sock):
    """Everything the server sends until it closes the connection (b"" for a bare close)."""
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


def exchange(port, request):
    with connect(port) as sock:
        sock.sendall(request)
        return read_until_closed(sock)
