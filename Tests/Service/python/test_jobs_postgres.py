"""Two daemons sharing one job queue in PostgreSQL (`job_store: postgres`) and one data
directory, as replicas on one host: a job submitted to one is watched and cancelled from
the other; a train job whose daemon is killed with SIGKILL is reclaimed by the other once
its lease ends, resumes from its checkpoint, and ends with exactly the model an
uninterrupted run makes.

Needs the PostgreSQL server scripts/with-postgres starts (CUREC_TEST_POSTGRES_URL)."""

import os
import signal
import subprocess
import tempfile
import uuid

import grpc
import pytest

from curec_client._proto.curec.v1 import job_pb2, job_pb2_grpc
from conftest import RunningDaemon
from test_jobs import watch_to_end, watch_until

POSTGRES_URL = os.environ.get("CUREC_TEST_POSTGRES_URL", "")

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="no PostgreSQL server (run under scripts/with-postgres)")

BPR_CONFIG = '{"factors": 16, "epochs": 400, "checkpoint_every": 10, "seed": 5}'


def new_database():
    name = "curec_service_" + uuid.uuid4().hex
    subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-qAt", POSTGRES_URL, "-c", "CREATE DATABASE %s" % name],
                   check=True, capture_output=True, timeout=60)
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


def replica(url, data_dir):
    return RunningDaemon("--no-plugins", "--job-store", "postgres", "--job-store-url", url,
                         "--job-lease-seconds", "2", data_dir=data_dir)


def test_a_job_submitted_to_one_replica_is_watched_and_cancelled_from_the_other():
    url = new_database()
    data_dir = tempfile.mkdtemp(prefix="curec-replicas-")
    first = replica(url, data_dir)
    second = None
    try:
        first_channel = grpc.insecure_channel(first.address)
        first_jobs = job_pb2_grpc.JobServiceStub(first_channel)
        job = first_jobs.Submit(job_pb2.SubmitJobRequest(kind="train", parameters={
            "library": "CURecBPR", "config": '{"factors": 16, "epochs": 100000}', "name": "long"}), timeout=10)
        # The first replica runs it (the second is not up yet).
        watch_until(first_jobs, job.id, lambda e: e.state == job_pb2.JOB_STATE_RUNNING)
        second = replica(url, data_dir)
        second_channel = grpc.insecure_channel(second.address)
        second_jobs = job_pb2_grpc.JobServiceStub(second_channel)
        watch_until(second_jobs, job.id, lambda e: e.step >= 2)
        second_jobs.Cancel(job_pb2.CancelJobRequest(id=job.id), timeout=10)
        events = watch_to_end(second_jobs, job.id)
        assert events[-1].state == job_pb2.JOB_STATE_CANCELLED, events[-1]
        assert first_jobs.Get(job_pb2.GetJobRequest(id=job.id), timeout=10).state == job_pb2.JOB_STATE_CANCELLED
        first_channel.close()
        second_channel.close()
    finally:
        assert first.stop() == 0, first.log_tail()
        if second is not None:
            assert second.stop() == 0, second.log_tail()


def test_a_killed_replicas_job_resumes_on_the_other_with_the_same_model():
    url = new_database()
    data_dir = tempfile.mkdtemp(prefix="curec-replicas-")
    first = replica(url, data_dir)
    second = None
    try:
        channel = grpc.insecure_channel(first.address)
        jobs = job_pb2_grpc.JobServiceStub(channel)
        reference = jobs.Submit(job_pb2.SubmitJobRequest(kind="train", parameters={
            "library": "CURecBPR", "config": BPR_CONFIG, "name": "uninterrupted"}), timeout=10)
        assert watch_to_end(jobs, reference.id)[-1].state == job_pb2.JOB_STATE_SUCCEEDED
        job = jobs.Submit(job_pb2.SubmitJobRequest(kind="train", parameters={
            "library": "CURecBPR", "config": BPR_CONFIG, "name": "crashed"}), timeout=10)
        # The first replica runs it (the second is not up yet).
        watch_until(jobs, job.id, lambda e: e.state == job_pb2.JOB_STATE_RUNNING)
        channel.close()
        second = replica(url, data_dir)
        channel = grpc.insecure_channel(second.address)
        jobs = job_pb2_grpc.JobServiceStub(channel)
        watch_until(jobs, job.id, lambda e: e.step >= 45)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        first.log.close()

        events = watch_to_end(jobs, job.id)
        assert events[-1].state == job_pb2.JOB_STATE_SUCCEEDED, events[-1]
        record = jobs.Get(job_pb2.GetJobRequest(id=job.id), timeout=10)
        assert record.attempts == 2
        assert any(e.log_line.startswith("resumed (attempt 2) on ") and "/%d/" % second.proc.pid in e.log_line
                   for e in events), [e.log_line for e in events]
        resumed = [e.metrics["resumed_from_epoch"] for e in events if "resumed_from_epoch" in e.metrics]
        if not resumed:
            resumed = [record.metrics.get("resumed_from_epoch", 0)]
        assert resumed[0] >= 40, "training restarted instead of resuming (%s)" % resumed
        for name in ("user_factors.f32", "item_factors.f32", "item_bias.f32"):
            with open(os.path.join(data_dir, "models", "uninterrupted", "v1", name), "rb") as a, \
                    open(os.path.join(data_dir, "models", "crashed", "v1", name), "rb") as b:
                assert a.read() == b.read(), name
        channel.close()
    finally:
        for daemon in (first, second):
            if daemon is not None and daemon.proc.poll() is None:
                assert daemon.stop() == 0, daemon.log_tail()
