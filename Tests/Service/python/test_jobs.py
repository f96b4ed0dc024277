"""JobService and ModelService: training and evaluation jobs end to end, cancellation,
recovery after kill -9, and bad input."""

import json
import os
import signal
import subprocess
import tempfile

import grpc
import pytest

from curec_client._proto.curec.v1 import job_pb2, job_pb2_grpc, model_pb2, model_pb2_grpc, recommend_pb2, recommend_pb2_grpc
from conftest import REPO_ROOT, RunningDaemon

FINAL = {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED}


@pytest.fixture(scope="module")
def jobs(channel):
    return job_pb2_grpc.JobServiceStub(channel)


def watch_to_end(jobs, job_id, timeout=300):
    events = list(jobs.Watch(job_pb2.WatchJobRequest(id=job_id), timeout=timeout))
    assert events and events[-1].final
    return events


def watch_until(jobs, job_id, predicate, timeout=300):
    """The first event of the job that satisfies predicate: Watch sends the current state
    first, then every change, so the test waits on the event itself. The RPC deadline only
    guards against a hang."""
    events = jobs.Watch(job_pb2.WatchJobRequest(id=job_id), timeout=timeout)
    try:
        for event in events:
            if predicate(event):
                return event
    finally:
        events.cancel()
    raise AssertionError("the job ended without the event awaited")


def test_train_job_watched_to_completion_then_served(channel, jobs):
    job = jobs.Submit(job_pb2.SubmitJobRequest(kind="train", parameters={
        "library": "CURecBPR", "config": '{"factors": 32, "epochs": 20}', "name": "bpr-job", "serve": "true"}), timeout=10)
    assert job.state == job_pb2.JOB_STATE_QUEUED and job.id
    events = watch_to_end(jobs, job.id)
    assert events[-1].state == job_pb2.JOB_STATE_SUCCEEDED, events[-1]
    train_steps = [e.step for e in events if e.stage == "train" and e.total == 20]
    assert train_steps and train_steps == sorted(train_steps) and train_steps[-1] == 20
    assert any("loss" in e.metrics for e in events)
    finished = jobs.Get(job_pb2.GetJobRequest(id=job.id), timeout=10)
    assert finished.artifact == "models/bpr-job/v1" and finished.attempts == 1
    response = recommend_pb2_grpc.RecommendServiceStub(channel).Recommend(
        recommend_pb2.RecommendRequest(user_id="196", k=5, plugin="bpr-job"), timeout=10)
    assert response.served_by.startswith("bpr-job@") and len(response.items) == 5
    models = model_pb2_grpc.ModelServiceStub(channel).List(model_pb2.ListModelsRequest(name="bpr-job"), timeout=10)
    assert [v.version for v in models.models[0].versions] == ["v1"]
    assert models.models[0].versions[0].metadata["job"] == job.id


def go_recommend(address, plugin):
    """Runs the Go client's example program (clients/go/cmd/curec-recommend), offline."""
    go_dir = os.path.join(REPO_ROOT, "clients", "go")
    subprocess.run(["./vendor-debian.sh"], cwd=go_dir, check=True, capture_output=True)
    env = dict(os.environ, GO111MODULE="on", GOFLAGS="-mod=vendor", GOPROXY="off", GOWORK="off",
               GOCACHE=os.path.join(go_dir, ".cache", "go-build"))
    return subprocess.run(["go", "run", "./cmd/curec-recommend", "--address", address, "--user", "196", "--k", "5",
                           "--plugin", plugin], cwd=go_dir, env=env, capture_output=True, text=True, timeout=300)


def test_model_trained_from_python_is_recommended_from_go(daemon, jobs):
    """The issue's loop: train from Python (done above as bpr-job), recommend from Go."""
    jobs.Get(job_pb2.GetJobRequest(id=jobs.List(job_pb2.ListJobsRequest(kind="train"), timeout=10).jobs[-1].id), timeout=10)
    result = go_recommend(daemon.address, "bpr-job")
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert len(lines) == 5 and all(len(fields) == 3 for fields in lines), result.stdout
    failure = go_recommend(daemon.address, "no-such-plugin")
    assert failure.returncode == 1 and "NOT_FOUND" in failure.stderr + failure.stdout


def test_evaluate_job_reports_ranking_metrics(jobs):
    job = jobs.Submit(job_pb2.SubmitJobRequest(kind="evaluate", parameters={"plugin": "bpr", "split": "test"}), timeout=10)
    events = watch_to_end(jobs, job.id)
    assert events[-1].state == job_pb2.JOB_STATE_SUCCEEDED
    metrics = jobs.Get(job_pb2.GetJobRequest(id=job.id), timeout=10).metrics
    assert metrics["users"] > 900
    assert metrics["recall@20"] >= metrics["recall@10"] > 0.03


def test_cancel_stops_a_running_job(jobs):
    job = jobs.Submit(job_pb2.SubmitJobRequest(kind="train", parameters={
        "library": "CURecBPR", "config": '{"factors": 32, "epochs": 2000}', "name": "bpr-cancelled"}), timeout=10)
    watch_until(jobs, job.id, lambda event: event.step >= 3)
    jobs.Cancel(job_pb2.CancelJobRequest(id=job.id), timeout=10)
    events = watch_to_end(jobs, job.id, timeout=60)
    assert events[-1].state == job_pb2.JOB_STATE_CANCELLED
    record = jobs.Get(job_pb2.GetJobRequest(id=job.id), timeout=10)
    assert record.step < 2000 and record.artifact == ""
    with pytest.raises(grpc.RpcError) as failure:
        jobs.Cancel(job_pb2.CancelJobRequest(id=job.id), timeout=10)
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already ended (cancelled)" in failure.value.details()


@pytest.mark.parametrize(
    "kind, parameters, code, words",
    [
        ("", {}, grpc.StatusCode.INVALID_ARGUMENT, "kind is empty"),
        ("bake", {}, grpc.StatusCode.INVALID_ARGUMENT, "unknown job kind 'bake'"),
        ("train", {}, grpc.StatusCode.INVALID_ARGUMENT, "'library' is required"),
        ("train", {"library": "CURecBPR", "serve": "maybe"}, grpc.StatusCode.INVALID_ARGUMENT, "'serve' must be true or false"),
        ("train", {"library": "CURecBPR", "epochs": "3"}, grpc.StatusCode.INVALID_ARGUMENT, "unknown parameter 'epochs'"),
        ("train", {"library": "libNope.so"}, grpc.StatusCode.INVALID_ARGUMENT, "libNope.so"),
        ("train", {"library": "CURecBPR", "name": "../escape"}, grpc.StatusCode.INVALID_ARGUMENT, "letters, digits"),
        ("train", {"library": "CURecBPR", "name": "lm"}, grpc.StatusCode.INVALID_ARGUMENT, "not a name the daemon publishes"),
        ("train", {"library": "/tmp/libx.so"}, grpc.StatusCode.INVALID_ARGUMENT, "not a plain file name"),
        ("train", {"library": "CURecPopularity", "config_base64": "%%%"}, grpc.StatusCode.INVALID_ARGUMENT, "must be base64"),
        ("train", {"library": "CURecBPR", "config": "{}", "config_base64": "e30="}, grpc.StatusCode.INVALID_ARGUMENT, "not both"),
        ("evaluate", {"split": "future"}, grpc.StatusCode.INVALID_ARGUMENT, "'split' must be validation or test"),
        ("evaluate", {"cutoffs": "10,x"}, grpc.StatusCode.INVALID_ARGUMENT, "cutoffs"),
        ("evaluate", {"plugin": "ghost"}, grpc.StatusCode.INVALID_ARGUMENT, "'ghost' is not loaded"),
        ("pretrain", {"steps": "many"}, grpc.StatusCode.INVALID_ARGUMENT, "'steps' must be an integer"),
        ("pretrain", {"width": "100", "heads": "3"}, grpc.StatusCode.INVALID_ARGUMENT, "multiple of heads"),
        ("pretrain", {"depth": "3"}, grpc.StatusCode.INVALID_ARGUMENT, "unknown parameter 'depth'"),
    ],
)
def test_bad_submissions_are_refused_clearly(jobs, kind, parameters, code, words):
    with pytest.raises(grpc.RpcError) as failure:
        jobs.Submit(job_pb2.SubmitJobRequest(kind=kind, parameters=parameters), timeout=10)
    assert failure.value.code() == code
    assert words in failure.value.details()


def test_unknown_job_ids_are_not_found(jobs):
    for call in (lambda: jobs.Get(job_pb2.GetJobRequest(id="job-nope"), timeout=10),
                 lambda: jobs.Cancel(job_pb2.CancelJobRequest(id="job-nope"), timeout=10),
                 lambda: list(jobs.Watch(job_pb2.WatchJobRequest(id="job-nope"), timeout=10))):
        with pytest.raises(grpc.RpcError) as failure:
            call()
        assert failure.value.code() == grpc.StatusCode.NOT_FOUND
        assert "job-nope" in failure.value.details()


def test_list_filters_by_state_and_kind(jobs):
    succeeded = jobs.List(job_pb2.ListJobsRequest(state=job_pb2.JOB_STATE_SUCCEEDED, kind="train"), timeout=10).jobs
    assert succeeded and all(j.state == job_pb2.JOB_STATE_SUCCEEDED and j.kind == "train" for j in succeeded)


def test_full_queue_is_resource_exhausted():
    data_dir = tempfile.mkdtemp(prefix="curec-queue-")
    config = os.path.join(data_dir, "curecd.yaml")
    with open(config, "w") as handle:
        handle.write("job_queue_capacity: 2\nplugins:\n  - {name: bpr, library: CURecBPR, config: '{\"factors\": 8, \"epochs\": 1}'}\n")
    daemon = RunningDaemon("--config", config, data_dir=data_dir)
    try:
        channel = grpc.insecure_channel(daemon.address)
        stub = job_pb2_grpc.JobServiceStub(channel)
        slow = {"library": "CURecBPR", "config": '{"factors": 8, "epochs": 100000}', "name": "slow"}
        submitted = [stub.Submit(job_pb2.SubmitJobRequest(kind="train", parameters=slow), timeout=10)]
        watch_until(stub, submitted[0].id, lambda event: event.state == job_pb2.JOB_STATE_RUNNING)
        submitted += [stub.Submit(job_pb2.SubmitJobRequest(kind="train", parameters=slow), timeout=10) for _ in range(2)]
        with pytest.raises(grpc.RpcError) as failure:
            stub.Submit(job_pb2.SubmitJobRequest(kind="train", parameters=slow), timeout=10)
        assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue is full (2 jobs waiting)" in failure.value.details()
        for job in submitted:
            stub.Cancel(job_pb2.CancelJobRequest(id=job.id), timeout=10)
        channel.close()
    finally:
        assert daemon.stop() == 0


def test_kill_9_during_training_resumes_from_checkpoint_without_losing_work():
    data_dir = tempfile.mkdtemp(prefix="curec-crash-")
    daemon = RunningDaemon("--no-plugins", data_dir=data_dir)
    config = '{"factors": 16, "epochs": 150, "checkpoint_every": 10, "seed": 5}'
    try:
        channel = grpc.insecure_channel(daemon.address)
        stub = job_pb2_grpc.JobServiceStub(channel)
        reference = stub.Submit(job_pb2.SubmitJobRequest(kind="train", parameters={
            "library": "CURecBPR", "config": config, "name": "uninterrupted"}), timeout=10)
        watch_to_end(stub, reference.id)
        job = stub.Submit(job_pb2.SubmitJobRequest(kind="train", parameters={
            "library": "CURecBPR", "config": config, "name": "crashed"}), timeout=10)
        watch_until(stub, job.id, lambda event: event.step >= 45)
        channel.close()
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait()
        daemon.log.close()
        assert any(name.startswith("epoch-") for name in os.listdir(os.path.join(data_dir, "jobs", job.id, "checkpoint")))

        daemon = RunningDaemon("--no-plugins", data_dir=data_dir)
        channel = grpc.insecure_channel(daemon.address)
        stub = job_pb2_grpc.JobServiceStub(channel)
        events = watch_to_end(stub, job.id)
        assert events[-1].state == job_pb2.JOB_STATE_SUCCEEDED, events[-1]
        record = stub.Get(job_pb2.GetJobRequest(id=job.id), timeout=10)
        assert record.attempts == 2
        resumed = [e.metrics["resumed_from_epoch"] for e in events if "resumed_from_epoch" in e.metrics]
        if not resumed:  # the resume may have happened before we started watching
            resumed = [record.metrics.get("resumed_from_epoch", 0)]
        assert resumed[0] >= 40, "training restarted instead of resuming (%s)" % resumed
        # Finished work and records survived: the first job is still there and succeeded.
        assert stub.Get(job_pb2.GetJobRequest(id=reference.id), timeout=10).state == job_pb2.JOB_STATE_SUCCEEDED
        # A resumed run ends with exactly the model an uninterrupted one does.
        for name in ("user_factors.f32", "item_factors.f32", "item_bias.f32"):
            with open(os.path.join(data_dir, "models", "uninterrupted", "v1", name), "rb") as a, \
                    open(os.path.join(data_dir, "models", "crashed", "v1", name), "rb") as b:
                assert a.read() == b.read(), name
        channel.close()
    finally:
        assert daemon.stop() == 0
