"""The model registry shared by two daemons (`job_store: postgres`, one data directory), as
replicas on one host: a model one publishes to be served is served by the other, loaded when
the registry announces it; a torn publication (a file that does not match what its row
records) and a row naming a file outside the models directory are refused, and the version
served before keeps serving.

Needs the PostgreSQL server scripts/with-postgres starts (CUREC_TEST_POSTGRES_URL)."""

import json
import os
import shutil
import subprocess
import tempfile
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from curec_client._proto.curec.v1 import job_pb2, job_pb2_grpc, model_pb2, model_pb2_grpc, plugin_pb2, \
    plugin_pb2_grpc, recommend_pb2, recommend_pb2_grpc
from test_jobs import watch_to_end
from test_jobs_postgres import new_database, replica

POSTGRES_URL = os.environ.get("CUREC_TEST_POSTGRES_URL", "")

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="no PostgreSQL server (run under scripts/with-postgres)")


def wait_for_health(address, service, wanted, timeout=120):
    """Follows the health of `service` (Health.Watch) until it is `wanted`."""
    with grpc.insecure_channel(address) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        for response in stream:
            if response.status == wanted:
                stream.cancel()
                return
    raise AssertionError("health of %s never became %s" % (service, wanted))


def wait_for_log(daemon, text, count=1, timeout=120):
    """Waits until the daemon's log holds `text` `count` times (the line is the event awaited;
    replicas sharing a data directory share the log file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if open(daemon.log_path, "rb").read().decode(errors="replace").count(text) >= count:
            return
        time.sleep(0.05)
    raise AssertionError("%r never logged:\n%s" % (text, daemon.log_tail()))


def recommend(address, plugin):
    with grpc.insecure_channel(address) as channel:
        response = recommend_pb2_grpc.RecommendServiceStub(channel).Recommend(
            recommend_pb2.RecommendRequest(user_id="196", k=10, plugin=plugin), timeout=30)
    return [item.item_id for item in response.items]


def generation(address, name):
    with grpc.insecure_channel(address) as channel:
        plugins = plugin_pb2_grpc.PluginServiceStub(channel).List(plugin_pb2.ListPluginsRequest(), timeout=10).plugins
    return next(p.generation for p in plugins if p.name == name)


def psql(url, sql):
    return subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-qAt", url, "-c", sql], check=True,
                          capture_output=True, text=True, timeout=60).stdout


def copy_version(url, data_dir, name, version, edit_files):
    """Copies the row and directory of `name` v1 to `version`, with `edit_files` applied to the
    row's file list, as a publication whose row does not match its files would leave them."""
    row = json.loads(psql(url, "SELECT row_to_json(m) FROM curec_model_version m WHERE name = '%s' AND version = 1" % name))
    shutil.copytree(os.path.join(data_dir, "models", name, "v1"), os.path.join(data_dir, "models", name, "v%d" % version))
    files = edit_files(json.loads(row["files"]))
    psql(url, "INSERT INTO curec_model_version (name, version, kind, plugin, files, manifest, serve, publisher, created_ms) "
              "VALUES ('%s', %d, '%s', '%s', $f$%s$f$, $m$%s$m$, true, 'intruder', 0); "
              "SELECT pg_notify('curec_model_versions', seq::text) FROM curec_model_version WHERE name = '%s' AND version = %d"
         % (name, version, row["kind"], row["plugin"], json.dumps(files), row["manifest"], name, version))


def test_a_model_published_by_one_replica_is_served_by_the_other_and_torn_versions_are_refused():
    url = new_database()
    data_dir = tempfile.mkdtemp(prefix="curec-registry-")
    first = replica(url, data_dir)
    second = replica(url, data_dir)
    try:
        with grpc.insecure_channel(first.address) as channel:
            jobs = job_pb2_grpc.JobServiceStub(channel)
            job = jobs.Submit(job_pb2.SubmitJobRequest(kind="train", parameters={
                "library": "CURecBPR", "config": '{"factors": 16, "epochs": 30, "seed": 3}', "name": "shared",
                "serve": "true"}), timeout=10)
            events = watch_to_end(jobs, job.id)
            assert events[-1].state == job_pb2.JOB_STATE_SUCCEEDED, events[-1]
        # Whichever replica ran the job, both serve the version (the other loads it when the
        # registry announces it).
        for daemon in (first, second):
            wait_for_health(daemon.address, "plugin/shared", health_pb2.HealthCheckResponse.SERVING)
        assert recommend(first.address, "shared") == recommend(second.address, "shared")
        listings = []
        for daemon in (first, second):
            with grpc.insecure_channel(daemon.address) as channel:
                models = model_pb2_grpc.ModelServiceStub(channel).List(model_pb2.ListModelsRequest(name="shared"), timeout=10)
            listings.append([(v.version, v.metadata["publisher"], v.metadata["serve"]) for v in models.models[0].versions])
        assert listings[0] == listings[1] and [v[0] for v in listings[0]] == ["v1"] and listings[0][0][2] == "true"
        before = [generation(d.address, "shared") for d in (first, second)]
        ranking = recommend(first.address, "shared")

        # v2: a row whose file sizes do not match its files.
        copy_version(url, data_dir, "shared", 2,
                     lambda files: [dict(f, size=f["size"] + 1) if f["path"] != "metadata.json" else f for f in files])
        # Both replicas refuse it (they share the data directory, and so the log file).
        wait_for_log(first, "/v2: file 'bpr.json' has", count=2)
        assert "(torn publication)" in first.log_tail()
        # v3: a row naming a file outside the models directory.
        copy_version(url, data_dir, "shared", 3,
                     lambda files: files + [{"path": "../../../jobs.sqlite", "size": 0, "sha256": "0" * 64}])
        wait_for_log(first, "/v3: the registry names a file outside its directory", count=2)
        # Both still serve v1, unchanged.
        assert [generation(d.address, "shared") for d in (first, second)] == before
        assert recommend(first.address, "shared") == ranking == recommend(second.address, "shared")
    finally:
        for daemon in (first, second):
            assert daemon.stop() == 0, daemon.log_tail()
