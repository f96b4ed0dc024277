"""Fixtures for the client tests: one live curecd with the default plugins on MovieLens-100K.

The daemon binary is env CURECD (default .build/debug/curecd in the repository root); the
dataset is fetched with scripts/fetch-data if missing. The daemon gets a fresh data
directory, so it trains its default plugins (bpr, popularity, reward) on start (~5 s).
Set CURECD_ADDR=host:port to test against a daemon that is already running instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Iterator

import grpc
import pytest

from curec_client import Client, CurecError

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def curecd_binary() -> str:
    binary = os.environ.get("CURECD") or ".build/debug/curecd"
    return binary if os.path.isabs(binary) else os.path.join(REPO_ROOT, binary)


def dataset_dir() -> str:
    path = os.path.join(REPO_ROOT, "var", "data", "ml-100k")
    if not os.path.exists(os.path.join(path, "ml-100k.inter")):
        subprocess.run([os.path.join(REPO_ROOT, "scripts", "fetch-data"), path], check=True)
    return path


def lm_path() -> str:
    """The pretrained chat model the daemon serves as "smollm2", fetched if missing."""
    path = os.path.join(REPO_ROOT, "var", "models", "SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        subprocess.run([os.path.join(REPO_ROOT, "scripts", "fetch-lm")], check=True)
    return path


def minilm_args() -> list:
    """``--minilm-dir`` with the fetched MiniLM (scripts/fetch-minilm), for Embed and ScoreReasons."""
    path = os.path.join(REPO_ROOT, "var", "models", "all-MiniLM-L6-v2")
    return ["--minilm-dir", path] if os.path.exists(os.path.join(path, "model.safetensors")) else []


class Daemon:
    """A curecd on 127.0.0.1 with a port chosen by the kernel and a throwaway data directory."""

    def __init__(self) -> None:
        binary = curecd_binary()
        if not os.access(binary, os.X_OK):
            raise RuntimeError("no curecd at %s (build it, or set CURECD or CURECD_ADDR)" % binary)
        self.data_dir = tempfile.mkdtemp(prefix="curec-client-py-")
        self.port_file = os.path.join(self.data_dir, "port")
        self.log_path = os.path.join(self.data_dir, "curecd.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--port-file", self.port_file,
             "--data-dir", self.data_dir, "--dataset-dir", dataset_dir(), "--lm-path", lm_path(),
             "--pipeline-on-start", "off", *minilm_args()],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("curecd exited early:\n" + self.log_tail())
            try:
                with open(self.port_file) as handle:
                    text = handle.read()
            except FileNotFoundError:
                text = ""
            if text.endswith("\n"):
                self.address = "127.0.0.1:%d" % int(text)
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("curecd did not start within 300 s:\n" + self.log_tail())

    def log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                return handle.read()[-4000:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def address() -> Iterator[str]:
    external = os.environ.get("CURECD_ADDR")
    if external:
        yield external
        return
    daemon = Daemon()
    try:
        yield daemon.address
    finally:
        code = daemon.stop()
        tail = daemon.log_tail()
        if code == 0:
            shutil.rmtree(daemon.data_dir, ignore_errors=True)
    assert code == 0, "curecd exited with %s:\n%s" % (code, tail)


@pytest.fixture(scope="session")
def client(address: str) -> Iterator[Client]:
    with Client(address, timeout=30) as c:
        c.wait_until_ready(30)
        yield c


def _require_served(call, service: str) -> None:
    """Calls `call`; a daemon that answers UNIMPLEMENTED fails the test: every curecd serves
    `service` (it routes every method of the protos), so that answer means it is broken."""
    try:
        call()
    except CurecError as error:
        if error.code == grpc.StatusCode.UNIMPLEMENTED:
            pytest.fail("the daemon answers UNIMPLEMENTED for %s, which every curecd serves: %s"
                        % (service, error.message))
        raise


@pytest.fixture(scope="session")
def jobs(client: Client) -> Client:
    """The client, once the daemon has answered a JobService call."""
    _require_served(lambda: client.list_jobs(limit=1), "curec.v1.JobService")
    return client


@pytest.fixture(scope="session")
def models_service(client: Client) -> Client:
    """The client, once the daemon has answered a ModelService call."""
    _require_served(lambda: client.models(), "curec.v1.ModelService")
    return client
