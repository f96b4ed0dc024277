"""Fixtures for the service tests: one curecd with the default plugins on MovieLens-100K.

The daemon binary is env CURECD (default .build/debug/curecd); the dataset is fetched with
scripts/fetch-data if missing. Each session uses a fresh data directory, so plugins are
trained on start (BPR, popularity, collaborative reward).
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import grpc
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
# The generated stubs of the Python client package (clients/python), used without installing it.
sys.path.insert(0, os.path.join(REPO_ROOT, "clients", "python"))


def curecd_binary():
    binary = os.environ.get("CURECD") or ".build/debug/curecd"
    return binary if os.path.isabs(binary) else os.path.join(REPO_ROOT, binary)


def dataset_dir():
    path = os.path.join(REPO_ROOT, "var", "data", "ml-100k")
    if not os.path.exists(os.path.join(path, "ml-100k.inter")):
        subprocess.run([os.path.join(REPO_ROOT, "scripts", "fetch-data"), path], check=True)
    return path


def lm_path():
    """The pretrained chat model the daemon serves as "smollm2", fetched if missing."""
    path = os.path.join(REPO_ROOT, "var", "models", "SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        subprocess.run([os.path.join(REPO_ROOT, "scripts", "fetch-lm")], check=True)
    return path


def pytest_configure(config):
    config.addinivalue_line("markers", "pipeline: the long end-to-end CURec pipeline run (minutes)")
    config.addinivalue_line("markers", "cluster: replicas behind nginx on PostgreSQL (run under scripts/cluster; minutes)")


class RunningDaemon:
    def __init__(self, *extra, data_dir=None):
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="curec-service-")
        self.port_file = os.path.join(self.data_dir, "port")
        self.log_path = os.path.join(self.data_dir, "curecd.log")
        if os.path.exists(self.port_file):
            os.remove(self.port_file)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [curecd_binary(), "--listen", "127.0.0.1:0", "--port-file", self.port_file,
             "--data-dir", self.data_dir, "--dataset-dir", dataset_dir(), "--lm-path", lm_path(), *extra],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("curecd exited early:\n" + self.log_tail())
            try:
                text = open(self.port_file).read()
            except FileNotFoundError:
                text = ""
            if text.endswith("\n"):
                self.port = int(text)
                return
            time.sleep(0.1)
        raise RuntimeError("curecd did not start:\n" + self.log_tail())

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    @property
    def metrics_port(self):
        """The port of `/metrics` (started with `--metrics-listen`), from the line curecd logs
        before it writes the port file."""
        text = open(self.log_path, "rb").read().decode(errors="replace")
        matches = [m.group(1) for line in text.splitlines() if "serving metrics" in line
                   for m in [re.search(r"address=\S+:(\d+)", line)] if m]
        assert matches, "curecd serves no metrics:\n" + self.log_tail()
        return int(matches[-1])

    def log_tail(self):
        try:
            return open(self.log_path, "rb").read()[-4000:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def daemon():
    running = RunningDaemon("--metrics-listen", "127.0.0.1:0")
    yield running
    assert running.stop() == 0, running.log_tail()


@pytest.fixture(scope="session")
def channel(daemon):
    ch = grpc.insecure_channel(daemon.address)
    yield ch
    ch.close()


# What a hostile call may leave resident once it is answered: allocator slack, not the
# megabytes an attack would pin.
MEMORY_SLACK_MIB = 32


def resident_mib(pid):
    """The resident set size of process `pid` in MiB (VmRSS of /proc/PID/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS for %d" % pid)


def assert_memory_returns_to(pid, baseline_mib, what, slack_mib=MEMORY_SLACK_MIB, seconds=15.0):
    """Waits until process `pid` is resident in at most `baseline_mib` + `slack_mib` MiB,
    polling /proc until `seconds` have passed; fails with the figures if it never is."""
    end = time.monotonic() + seconds
    while True:
        now = resident_mib(pid)
        if now <= baseline_mib + slack_mib:
            return now
        if time.monotonic() >= end:
            raise AssertionError("%s: RSS stayed at %.0f MiB, over its baseline of %.0f MiB + %d MiB for %.0f s"
                                 % (what, now, baseline_mib, slack_mib, seconds))
        time.sleep(0.1)
