"""The PostgreSQL job store seen from outside: a bad store URL or an unreachable database
stops the daemon at start with a clear message and a failing exit status (and no password
in it); a database lost while serving turns health NOT_SERVING and job calls UNAVAILABLE,
and both come back when the database does.

Needs the PostgreSQL server scripts/with-postgres starts (CUREC_TEST_POSTGRES_URL)."""

import json
import os
import time
import socket
import subprocess
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from interop_support import CALL_TIMEOUT, Daemon, daemon_command, new_channel, use_reference

POSTGRES_URL = os.environ.get("CUREC_TEST_POSTGRES_URL", "")
LIST_JOBS_PATH = "/curec.v1.JobService/List"

pytestmark = [
    pytest.mark.skipif(use_reference(), reason="the job store is curecd's"),
    pytest.mark.skipif(bool(os.environ.get("CURECD_ADDR")), reason="starts its own daemons"),
    pytest.mark.skipif(not POSTGRES_URL, reason="no PostgreSQL server (run under scripts/with-postgres)"),
]


def psql(sql, database="postgres"):
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + database
    subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-qAt", url, "-c", sql], check=True, capture_output=True,
                   timeout=60)


@pytest.fixture
def database():
    """A new, empty database for one test; its URL."""
    name = "curec_interop_" + uuid.uuid4().hex
    psql("CREATE DATABASE %s" % name)
    yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name, name
    psql("ALTER DATABASE %s WITH ALLOW_CONNECTIONS true" % name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_fails(tmp_path, *args):
    command = daemon_command(str(tmp_path / "port"), extra_args=args)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert not (tmp_path / "port").exists()
    return result.returncode, result.stdout + result.stderr


def test_an_unreachable_database_stops_the_start_with_its_address_and_no_password(tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text("s3cret-on-disk\n")
    port = free_port()
    status, output = start_fails(
        tmp_path, "--job-store", "postgres",
        "--job-store-url", "postgres://curec@127.0.0.1:%d/jobs?connect_timeout=3" % port,
        "--job-store-password-file", str(password_file))
    assert status != 0
    assert "the job store is unavailable" in output, output[-2000:]
    assert "postgres://curec@127.0.0.1:%d/jobs" % port in output
    assert "s3cret" not in output
    assert len(output) < 4000


@pytest.mark.parametrize("args, words", [
    (("--job-store", "postgres", "--job-store-url", "postgres://curec:hunter2@127.0.0.1/jobs"),
     "must not hold a password"),
    (("--job-store", "postgres"), "needs job_store_url"),
    (("--job-store", "postgres", "--job-store-url", "http://127.0.0.1/jobs"), "must start with postgres://"),
    (("--job-store", "postgres", "--job-store-url", "postgres://u@h/" + "d" * 5000), "job_store_url"),
    (("--job-store-url", "postgres://curec@127.0.0.1/jobs"), "set job_store: postgres"),
    (("--job-store", "mysql"), "must be one of sqlite, postgres"),
    (("--job-store", "postgres", "--job-store-url", "postgres://u@127.0.0.1/d",
      "--job-store-password-file", "/nonexistent/password"), "job_store_password_file"),
])
def test_bad_job_store_settings_stop_the_start_with_a_short_reason(tmp_path, args, words):
    status, output = start_fails(tmp_path, *args)
    assert status != 0
    assert words in output, output[-2000:]
    assert "hunter2" not in output
    assert len(output) < 4000


def _health_stream(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=300)


def _next_status(stream, wanted):
    for response in stream:
        if response.status == wanted:
            return
    raise AssertionError("health stream ended before %s" % wanted)


def test_a_database_lost_while_serving_turns_health_not_serving_until_it_returns(database):
    url, name = database
    server = Daemon("--job-store", "postgres", "--job-store-url", url, "--job-lease-seconds", "1").start()
    channel = new_channel(server.address)
    try:
        list_jobs = channel.unary_unary(LIST_JOBS_PATH)
        list_jobs(b"", timeout=CALL_TIMEOUT)
        health = _health_stream(channel)
        _next_status(health, health_pb2.HealthCheckResponse.SERVING)
        psql("ALTER DATABASE %s WITH ALLOW_CONNECTIONS false" % name)
        psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'" % name)
        _next_status(health, health_pb2.HealthCheckResponse.NOT_SERVING)
        with pytest.raises(grpc.RpcError) as failure:
            list_jobs(b"", timeout=CALL_TIMEOUT)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        assert len(failure.value.details()) < 600
        psql("ALTER DATABASE %s WITH ALLOW_CONNECTIONS true" % name)
        _next_status(health, health_pb2.HealthCheckResponse.SERVING)
        list_jobs(b"", timeout=CALL_TIMEOUT)
        health.cancel()
    finally:
        channel.close()
        assert server.stop() == 0, server.log_tail()


LIST_MODELS_PATH = "/curec.v1.ModelService/List"


def test_registry_rows_naming_files_outside_the_models_directory_are_refused(database):
    """Rows another writer of the database made up, published to be served: a file path that
    climbs out of the version directory, an absolute one, a name that is a path, a library
    given as a path. The daemon loads none (nothing the database names is executed or read
    outside the models and plugin directories), says why in its log, and keeps serving."""
    url, name = database
    server = Daemon("--job-store", "postgres", "--job-store-url", url, "--job-lease-seconds", "1").start()
    channel = new_channel(server.address)
    try:
        manifest = json.dumps({"manifest_version": 1, "kind": "plugin-state", "plugin": "bpr", "library": "/bin/sh",
                               "config": "{}"})
        rows = [
            ("escape", [{"path": "../../../../../etc/passwd", "size": 1, "sha256": "0" * 64}]),
            ("absolute", [{"path": "/etc/passwd", "size": 1, "sha256": "0" * 64}]),
            ("../../etc", [{"path": "passwd", "size": 1, "sha256": "0" * 64}]),
            ("no-files", []),
        ]
        for model, files in rows:
            psql("INSERT INTO curec_model_version (name, version, kind, plugin, files, manifest, serve, publisher, "
                 "created_ms) VALUES ($n$%s$n$, 1, 'plugin-state', 'bpr', $f$%s$f$, $m$%s$m$, true, 'intruder', 0); "
                 "SELECT pg_notify('curec_model_versions', seq::text) FROM curec_model_version WHERE name = $n$%s$n$"
                 % (model, json.dumps(files), manifest, model), database=name)
        deadline = time.monotonic() + 120
        while server.log_tail(100000).count("model version refused") < len(rows):
            assert time.monotonic() < deadline, server.log_tail()
            assert server.proc.poll() is None, server.log_tail()
            time.sleep(0.05)
        log = server.log_tail(100000)
        assert "outside its directory" in log and "not a valid model name" in log and "lists no files" in log
        assert "plugin loaded" not in log
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=CALL_TIMEOUT)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        # The listing still answers, with the rows as recorded.
        assert len(channel.unary_unary(LIST_MODELS_PATH)(b"", timeout=CALL_TIMEOUT)) > 0
    finally:
        channel.close()
        assert server.stop() == 0, server.log_tail()
