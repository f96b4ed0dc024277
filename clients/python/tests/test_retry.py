"""The client's retry policy against a port that refuses first and a daemon that restarts.

A `Gate` stands on a port of its own in front of the test daemon: it closes the first
connections it is told to refuse at once (what a client sees from a replica that is down,
draining or restarting) and forwards the others. Each test waits on what the gate saw or on
the call's answer, never on a sleep.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import List

import grpc
import pytest

from curec_client import DEFAULT_RETRY_POLICY, IDEMPOTENT_METHODS, Client, CurecError, RetryPolicy


class Gate:
    """A loopback TCP port that refuses (accepts and resets) the next `refuse` connections,
    then forwards each connection to `target` until `restart` drops them all."""

    def __init__(self, target: str, refuse: int) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.lock = threading.Lock()
        self.to_refuse = refuse
        self.refused = 0
        self.forwarded = 0
        self.open: List[socket.socket] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                refuse = self.to_refuse > 0
                if refuse:
                    self.to_refuse -= 1
                    self.refused += 1
            if refuse:
                _reset(conn)
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                _reset(conn)
                continue
            with self.lock:
                self.forwarded += 1
                self.open += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def restart(self, refuse: int) -> None:
        """Drops every forwarded connection and refuses the next `refuse` (a daemon that
        went away and is not back yet)."""
        with self.lock:
            self.to_refuse = refuse
            dropped, self.open = self.open, []
        for conn in dropped:
            _reset(conn)

    def close(self) -> None:
        self.listener.close()
        self.restart(0)


def _reset(conn: socket.socket) -> None:
    """Closes with a TCP reset (SO_LINGER 0), as a port with nothing behind it does."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    conn.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    for conn in (source, sink):
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@pytest.fixture
def gate(address: str):
    opened: List[Gate] = []

    def make(refuse: int) -> Gate:
        opened.append(Gate(address, refuse))
        return opened[-1]

    yield make
    for g in opened:
        g.close()


def test_a_scoring_call_is_retried_past_a_refused_connection(gate) -> None:
    g = gate(refuse=1)
    with Client(g.address, timeout=30) as client:
        answer = client.recommend("196", k=5)
    assert len(answer) == 5
    assert g.refused == 1 and g.forwarded >= 1


def test_without_retries_the_refused_call_fails_unavailable(gate) -> None:
    g = gate(refuse=1)
    with Client(g.address, timeout=30, retry=False) as client:
        with pytest.raises(CurecError) as raised:
            client.recommend("196", k=5)
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert g.refused == 1


def test_submit_is_never_retried(gate) -> None:
    g = gate(refuse=1)
    with Client(g.address, timeout=30) as client:
        with pytest.raises(CurecError) as raised:
            client.submit_job("evaluate")
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE


def test_calls_after_a_daemon_restart_succeed(gate) -> None:
    g = gate(refuse=0)
    with Client(g.address, timeout=30) as client:
        assert len(client.list_jobs(limit=1)) <= 1
        forwarded = g.forwarded
        # The daemon "restarts": its connections drop and the next two connects are refused.
        g.restart(refuse=2)
        assert len(client.recommend("196", k=3)) == 3
        assert client.models() is not None
    assert g.refused == 2 and g.forwarded > forwarded


def test_the_policy_is_a_standard_service_config() -> None:
    config = DEFAULT_RETRY_POLICY.service_config()
    (method_config,) = config["methodConfig"]
    policy = method_config["retryPolicy"]
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert 2 <= policy["maxAttempts"] <= 5
    names = {(n["service"], n["method"]) for n in method_config["name"]}
    assert ("curec.v1.RecommendService", "Score") in names
    assert ("inference.GRPCInferenceService", "ModelInfer") in names
    for service, method in [("curec.v1.JobService", "Submit"), ("curec.v1.PluginService", "Load"),
                            ("curec.v1.DatasetService", "Upload"), ("curec.v1.JobService", "Cancel")]:
        assert (service, method) not in names
    assert sum(len(m) for m in IDEMPOTENT_METHODS.values()) == len(names)
    # A caller's own service config wins over the policy's.
    own = ("grpc.service_config", json.dumps({"methodConfig": []}))
    options = dict(DEFAULT_RETRY_POLICY.channel_options([own]))
    assert "grpc.service_config" not in options and options["grpc.enable_retries"] == 1
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=9)
