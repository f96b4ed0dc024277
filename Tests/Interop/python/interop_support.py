"""Helpers shared by the Python interop suites: starting the daemon, channels, streams."""

import os
import queue
import signal
import subprocess
import sys
import tempfile
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
LM_PATH = os.path.join(REPO_ROOT, "var", "models", "SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
REFERENCE_SERVER = os.path.join(HERE, "reference_server.py")

TEST_SERVICE = "grpc.testing.TestService"
HEALTH_SERVICE = "grpc.health.v1.Health"
ECHO_INITIAL_KEY = "x-grpc-test-echo-initial"
ECHO_TRAILING_KEY = "x-grpc-test-echo-trailing-bin"

# Per-call deadline for calls that are expected to succeed quickly.
CALL_TIMEOUT = 15.0
STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 15.0

# Keep every channel on loopback and away from any proxy set in the environment.
CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),
    ("grpc.enable_retries", 0),
]


def use_reference():
    return os.environ.get("INTEROP_REFERENCE") == "1"


def daemon_command(port_file, listen="127.0.0.1:0", extra_args=()):
    """The command line that starts the server under test (curecd or the reference), with
    `extra_args` (server flags such as --drain-timeout) appended."""
    args = ["--listen", listen, "--enable-interop-testing", "--port-file", port_file, *extra_args]
    if use_reference():
        return [sys.executable, REFERENCE_SERVER] + args
    binary = os.environ.get("CURECD") or ".build/debug/curecd"
    if not os.path.isabs(binary):
        binary = os.path.join(REPO_ROOT, binary)
    if not os.access(binary, os.X_OK):
        raise RuntimeError(
            "curecd binary %s not found (run `swift build`, set CURECD, "
            "set CURECD_ADDR, or set INTEROP_REFERENCE=1)" % binary
        )
    # The interop cases need only the RPC layer: no dataset, no plugin training; the chat model
    # (fetched by scripts/fetch-lm) for the generation cases of the bad-peer suite.
    return [binary] + args + ["--no-plugins", "--data-dir", tempfile.mkdtemp(prefix="curec-interop-data-"),
                              "--lm-path", LM_PATH]


class Daemon:
    """One server process started for the tests, listening on 127.0.0.1."""

    def __init__(self, *extra_args, preexec_fn=None):
        self.extra_args = extra_args
        self.preexec_fn = preexec_fn
        self.workdir = tempfile.mkdtemp(prefix="curec-interop-")
        self.port_file = os.path.join(self.workdir, "port")
        self.log_path = os.path.join(self.workdir, "server.log")
        self.proc = None
        self.port = None
        self.terminated = False

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        cmd = daemon_command(self.port_file, extra_args=self.extra_args)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
            preexec_fn=self.preexec_fn,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "server exited with status %s before listening:\n%s" % (self.proc.returncode, self.log_tail())
                )
            try:
                with open(self.port_file) as f:
                    text = f.read()
            except FileNotFoundError:
                text = ""
            # The file is written atomically, so a complete line means a complete port.
            if text.endswith("\n") and text.strip().isdigit():
                self.port = int(text.strip())
                return self
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError("server did not write %s within %ss:\n%s" % (self.port_file, STARTUP_TIMEOUT, self.log_tail()))

    def alive(self):
        return self.proc is None or self.proc.poll() is None

    def terminate(self):
        """Sends SIGTERM once; stop() then only waits for the exit."""
        if not self.terminated and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.terminated = True

    def stop(self):
        """Sends SIGTERM (unless terminate() did) and returns the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.log.close()
                return None
        self.log.close()
        return self.proc.returncode

    def log_text(self):
        """Everything the server logged so far."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, limit=4000):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")


def new_channel(address):
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


class RequestQueue:
    """A request iterator the test feeds one message at a time (for bidi streams)."""

    _END = object()

    def __init__(self):
        self._queue = queue.Queue()

    def put(self, message):
        self._queue.put(message)

    def close(self):
        self._queue.put(self._END)

    def __iter__(self):
        return self

    def __next__(self):
        item = self._queue.get()
        if item is self._END:
            raise StopIteration
        return item


# What an attack may leave resident once it is over: allocator slack (freed heap the
# allocator keeps for reuse), not the megabytes an attack pins while it runs.
MEMORY_SLACK_MIB = 32
MEMORY_SETTLE_SECONDS = 15.0


def resident_mib(pid):
    """The resident set size of process `pid` in MiB (VmRSS of /proc/PID/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS for %d" % pid)


def assert_memory_returns_to(pid, baseline_mib, what, slack_mib=MEMORY_SLACK_MIB, seconds=MEMORY_SETTLE_SECONDS):
    """Waits until process `pid` is resident in at most `baseline_mib` + `slack_mib` MiB,
    polling /proc until `seconds` have passed; fails with the figures if it never is.
    Freed buffers leave as the server's timers and event loops get to them, so memory is
    watched until it drops rather than read once."""
    bound = baseline_mib + slack_mib
    end = time.monotonic() + seconds
    while True:
        now = resident_mib(pid)
        if now <= bound:
            return now
        if time.monotonic() >= end:
            raise AssertionError("%s: RSS stayed at %.0f MiB, over its baseline of %.0f MiB + %d MiB for %.0f s"
                                 % (what, now, baseline_mib, slack_mib, seconds))
        time.sleep(0.1)
