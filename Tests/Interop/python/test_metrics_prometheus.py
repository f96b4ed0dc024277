"""Debian's Prometheus scrapes curecd's `/metrics` and answers a query for a counter the test
made the daemon count, through its HTTP API."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest

from interop_support import CALL_TIMEOUT, new_channel, use_reference
from metrics_support import start_metrics_daemon

pytestmark = pytest.mark.skipif(
    use_reference() or bool(os.environ.get("CURECD_ADDR")),
    reason="starts curecd itself with --metrics-listen",
)

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
EMPTY_CALL = "/grpc.testing.TestService/EmptyCall"
CALLS = 7
# How long Prometheus may take to start, scrape (every second) and answer.
DEADLINE = 90


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _query(api_port, expression):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (api_port, urllib.parse.urlencode({"query": expression}))
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read().decode("utf-8"))


def test_prometheus_scrapes_and_queries_a_counter():
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.fail("Debian's prometheus is not installed: run scripts/setup --with-test-tools")
    daemon, metrics_port = start_metrics_daemon()
    workdir = tempfile.mkdtemp(prefix="curec-prometheus-")
    prometheus = None
    try:
        with new_channel(daemon.address) as channel:
            for _ in range(CALLS):
                channel.unary_unary(EMPTY_CALL)(b"", timeout=CALL_TIMEOUT)
        config = os.path.join(workdir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: curecd\n    static_configs:\n"
                "      - targets: ['127.0.0.1:%d']\n" % metrics_port)
        api_port = _free_port()
        log = open(os.path.join(workdir, "prometheus.log"), "wb")
        prometheus = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + config, "--storage.tsdb.path=" + os.path.join(workdir, "data"),
             "--web.listen-address=127.0.0.1:%d" % api_port],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        expression = 'curec_rpc_request_success_total{service="grpc.testing.TestService",method="EmptyCall"}'
        deadline = time.monotonic() + DEADLINE
        result = None
        # Wait on the event: the sample appears in Prometheus's answer.
        while time.monotonic() < deadline:
            assert prometheus.poll() is None, open(log.name, "rb").read()[-3000:].decode("utf-8", "replace")
            try:
                answer = _query(api_port, expression)
            except OSError:
                answer = None
            if answer and answer.get("status") == "success" and answer["data"]["result"]:
                result = answer["data"]["result"]
                break
            time.sleep(0.2)
        assert result, "no sample within %ds:\n%s" % (DEADLINE, open(log.name, "rb").read()[-3000:].decode("utf-8", "replace"))
        assert float(result[0]["value"][1]) == CALLS
        assert result[0]["metric"]["job"] == "curecd"
        up = _query(api_port, 'up{job="curecd"}')["data"]["result"]
        assert up and up[0]["value"][1] == "1"
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(30)
        assert daemon.stop() == 0, daemon.log_tail()
        shutil.rmtree(workdir, ignore_errors=True)
