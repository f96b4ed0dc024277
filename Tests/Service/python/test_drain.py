"""Drain on SIGTERM: with two replicas sharing a job queue in PostgreSQL and one data
directory, and with one daemon on SQLite.

A replica that receives SIGTERM while calls are in flight and a train job runs on it turns
its health NOT_SERVING, lets every call in flight finish OK, checkpoints the job and
releases it to the queue (a pause, not a crash: the lease is long, so only the release can
hand it over), and exits 0; the other replica resumes the job from that checkpoint, losing
no finished epoch, and ends with exactly the model an uninterrupted run makes. On SQLite
the job waits, paused with its checkpoint, for the daemon's next start.

The first test needs the PostgreSQL server scripts/with-postgres starts (CUREC_TEST_POSTGRES_URL)."""

import os
import sys
import tempfile
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from curec_client._proto.curec.v1 import job_pb2, job_pb2_grpc
from conftest import REPO_ROOT, RunningDaemon
from test_jobs import watch_to_end, watch_until
from test_jobs_postgres import POSTGRES_URL, new_database

sys.path.insert(0, os.path.join(REPO_ROOT, "Tests", "Interop", "python"))
from generated.grpc_testing import messages_pb2, test_pb2_grpc  # noqa: E402


# Checkpoints every 50 epochs; a pause between two of them checkpoints where it stops.
BPR_CONFIG = '{"factors": 16, "epochs": 240, "checkpoint_every": 50, "seed": 11}'
STREAMS = 3
RESPONSES = 4


def replica(url, data_dir):
    # A lease far longer than the test: the job can only move by being released.
    return RunningDaemon("--no-plugins", "--job-store", "postgres", "--job-store-url", url,
                         "--job-lease-seconds", "600", "--drain-timeout", "30", "--enable-interop-testing",
                         data_dir=data_dir)


@pytest.mark.skipif(not POSTGRES_URL, reason="no PostgreSQL server (run under scripts/with-postgres)")
def test_sigterm_drains_calls_and_hands_the_running_job_to_another_replica():
    url = new_database()
    data_dir = tempfile.mkdtemp(prefix="curec-drain-")
    first = replica(url, data_dir)
    second = None
    channels = []
    try:
        first_channel = grpc.insecure_channel(first.address)
        channels.append(first_channel)
        first_jobs = job_pb2_grpc.JobServiceStub(first_channel)
        job = first_jobs.Submit(job_pb2.SubmitJobRequest(kind="train", parameters={
            "library": "CURecBPR", "config": BPR_CONFIG, "name": "drained"}), timeout=10)
        watch_until(first_jobs, job.id, lambda e: e.state == job_pb2.JOB_STATE_RUNNING)

        # The second replica starts once the first runs the job, and runs the reference
        # (the first has one worker, busy).
        second = replica(url, data_dir)
        second_channel = grpc.insecure_channel(second.address)
        channels.append(second_channel)
        jobs = job_pb2_grpc.JobServiceStub(second_channel)
        reference = jobs.Submit(job_pb2.SubmitJobRequest(kind="train", parameters={
            "library": "CURecBPR", "config": BPR_CONFIG, "name": "uninterrupted"}), timeout=10)
        watch_until(jobs, job.id, lambda e: e.step >= 12)
        # Watch sends the current state, then every change: follow the job from here on.
        followed = {"events": []}
        following = threading.Event()

        def follow():
            try:
                for event in jobs.Watch(job_pb2.WatchJobRequest(id=job.id), timeout=900):
                    followed["events"].append(event)
                    following.set()
            except BaseException as error:  # reported by the test's thread below
                followed["error"] = error
            following.set()

        follower = threading.Thread(target=follow)
        follower.start()
        following.wait()

        # Calls in flight on the first replica: streams that each answer once at once, then
        # every 0.7 s; each has answered once (is in flight) before the signal.
        testing = test_pb2_grpc.TestServiceStub(first_channel)
        request = messages_pb2.StreamingOutputCallRequest(response_parameters=[
            messages_pb2.ResponseParameters(size=64, interval_us=0 if i == 0 else 700_000)
            for i in range(RESPONSES)])
        streams = [testing.StreamingOutputCall(request, timeout=120) for _ in range(STREAMS)]
        for stream in streams:
            assert len(next(stream).payload.body) == 64
        health = health_pb2_grpc.HealthStub(first_channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=120)
        assert next(health).status == health_pb2.HealthCheckResponse.SERVING

        first.proc.send_signal(15)  # SIGTERM

        # Health turns NOT_SERVING (what load balancers and readiness probes see).
        for answer in health:
            if answer.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
        health.cancel()
        # Every call in flight ends OK with all its answers.
        results = {}

        def drain(index, stream):
            results[index] = ([len(r.payload.body) for r in stream], stream.code())

        readers = [threading.Thread(target=drain, args=(i, s)) for i, s in enumerate(streams)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
        for index in range(STREAMS):
            bodies, code = results[index]
            assert code == grpc.StatusCode.OK and bodies == [64] * (RESPONSES - 1), (index, bodies, code)
        assert first.proc.wait(60) == 0, first.log_tail()
        first.log.close()

        # The job was released with a checkpoint where it stopped, not crashed, and the
        # second replica (once its reference is done) resumes it from there.
        assert watch_to_end(jobs, reference.id)[-1].state == job_pb2.JOB_STATE_SUCCEEDED
        follower.join()
        assert "error" not in followed, followed.get("error")
        events = followed["events"]
        assert events and events[-1].final
        assert events[-1].state == job_pb2.JOB_STATE_SUCCEEDED, events[-1]
        paused = [e for e in events if e.state == job_pb2.JOB_STATE_QUEUED and e.stage == "paused"]
        assert paused, [(e.state, e.stage, e.log_line) for e in events]
        assert paused[0].log_line.startswith("paused by a shutdown")
        record = jobs.Get(job_pb2.GetJobRequest(id=job.id), timeout=10)
        assert record.attempts == 2
        assert any(e.log_line.startswith("resumed (attempt 2) on ") and "/%d/" % second.proc.pid in e.log_line
                   for e in events), [e.log_line for e in events]
        resumed = [e.metrics["resumed_from_epoch"] for e in events if "resumed_from_epoch" in e.metrics]
        # (Events carry the job's metrics so far: the first with the value is the resume.)
        assert resumed and resumed[0] == paused[0].step, \
            "resumed from epoch %s, paused at epoch %d" % (resumed[:1], paused[0].step)
        assert 12 <= paused[0].step < 240
        for name in ("user_factors.f32", "item_factors.f32", "item_bias.f32"):
            with open(os.path.join(data_dir, "models", "uninterrupted", "v1", name), "rb") as a, \
                    open(os.path.join(data_dir, "models", "drained", "v1", name), "rb") as b:
                assert a.read() == b.read(), name
    finally:
        for channel in channels:
            channel.close()
        for daemon in (first, second):
            if daemon is not None and daemon.proc.poll() is None:
                assert daemon.stop() == 0, daemon.log_tail()


def test_sigterm_on_sqlite_checkpoints_the_job_and_the_next_start_resumes_it():
    """One daemon on SQLite: SIGTERM pauses the running job with a checkpoint where it
    stopped; the next start resumes it from there (not as a crash) and it ends with the same
    model as an uninterrupted run."""
    import sqlite3

    data_dir = tempfile.mkdtemp(prefix="curec-drain-sqlite-")
    daemon = RunningDaemon("--no-plugins", "--drain-timeout", "30", data_dir=data_dir)
    restarted = None
    try:
        with grpc.insecure_channel(daemon.address) as channel:
            jobs = job_pb2_grpc.JobServiceStub(channel)
            job = jobs.Submit(job_pb2.SubmitJobRequest(kind="train", parameters={
                "library": "CURecBPR", "config": BPR_CONFIG, "name": "paused"}), timeout=10)
            watch_until(jobs, job.id, lambda e: e.step >= 12)
        daemon.proc.send_signal(15)  # SIGTERM
        assert daemon.proc.wait(60) == 0, daemon.log_tail()
        daemon.log.close()

        with sqlite3.connect(os.path.join(data_dir, "jobs.sqlite")) as db:
            state, stage, step, crashes = db.execute(
                "SELECT state, stage, step, crashes FROM job WHERE id = ?", (job.id,)).fetchone()
        assert (state, stage, crashes) == ("queued", "paused", 0)
        assert os.listdir(os.path.join(data_dir, "jobs", job.id, "checkpoint")) == ["epoch-%d" % step]

        restarted = RunningDaemon("--no-plugins", data_dir=data_dir)
        with grpc.insecure_channel(restarted.address) as channel:
            jobs = job_pb2_grpc.JobServiceStub(channel)
            reference = jobs.Submit(job_pb2.SubmitJobRequest(kind="train", parameters={
                "library": "CURecBPR", "config": BPR_CONFIG, "name": "unpaused"}), timeout=10)
            assert watch_to_end(jobs, job.id)[-1].state == job_pb2.JOB_STATE_SUCCEEDED
            assert watch_to_end(jobs, reference.id)[-1].state == job_pb2.JOB_STATE_SUCCEEDED
            record = jobs.Get(job_pb2.GetJobRequest(id=job.id), timeout=10)
        assert record.attempts == 2 and record.metrics["resumed_from_epoch"] == step, record
        for name in ("user_factors.f32", "item_factors.f32", "item_bias.f32"):
            with open(os.path.join(data_dir, "models", "unpaused", "v1", name), "rb") as a, \
                    open(os.path.join(data_dir, "models", "paused", "v1", name), "rb") as b:
                assert a.read() == b.read(), name
    finally:
        for running in (daemon, restarted):
            if running is not None and running.proc.poll() is None:
                assert running.stop() == 0, running.log_tail()
