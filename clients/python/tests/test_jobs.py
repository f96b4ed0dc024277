"""JobService through the typed client: submit, watch, get, list, cancel; train and evaluate.

A daemon that answers UNIMPLEMENTED for JobService fails them: every curecd serves it.
"""

from __future__ import annotations

import grpc
import pytest

from curec_client import Client, CurecError, Job, JobEvent, JobState

JOB_TIMEOUT = 240  # seconds a small job may take on a busy 2-core machine


def test_train_job_streams_progress_saves_and_serves(jobs: Client) -> None:
    job = jobs.submit_job(
        "train", library="CURecBPR", config={"factors": 16, "epochs": 5}, name="bpr-client-job", serve=True
    )
    assert isinstance(job, Job)
    assert job.kind == "train" and job.id
    assert job.state in (JobState.QUEUED, JobState.RUNNING)
    assert job.parameters["serve"] == "true"
    assert job.parameters["config"] == '{"factors":16,"epochs":5}'

    events = list(jobs.watch(job.id, timeout=JOB_TIMEOUT))
    assert events and all(isinstance(e, JobEvent) for e in events)
    assert all(e.job_id == job.id for e in events)
    assert [e.final for e in events] == [False] * (len(events) - 1) + [True]
    last = events[-1]
    assert last.state is JobState.SUCCEEDED, last.error
    train_steps = [e.step for e in events if e.stage == "train"]
    assert train_steps and max(train_steps) == 5
    assert any(e.log_line for e in events)

    done = jobs.get_job(job.id)
    assert done.state is JobState.SUCCEEDED and done.finished
    assert done.artifact.startswith("models/bpr-client-job/")
    assert done.attempts >= 1
    assert done.created_unix_ms and done.started_unix_ms and done.finished_unix_ms
    assert done.created_unix_ms <= done.started_unix_ms <= done.finished_unix_ms

    # serve=true: the trained model now answers as its own plugin instance.
    assert "bpr-client-job" in jobs.plugins()
    answer = jobs.recommend("196", k=5, plugin="bpr-client-job")
    assert len(answer) == 5 and answer.served_by.startswith("bpr-client-job@")


def test_evaluate_job_reports_ranking_metrics(jobs: Client) -> None:
    job = jobs.submit_job("evaluate", plugin="bpr", split="validation", cutoffs=[10, 20])
    assert job.parameters["cutoffs"] == "10,20"
    seen = []
    done = jobs.wait_job(job.id, timeout=JOB_TIMEOUT, on_event=seen.append)
    assert done.state is JobState.SUCCEEDED, done.error
    assert seen and seen[-1].final
    for name in ("recall@10", "ndcg@10", "recall@20", "ndcg@20"):
        assert 0.0 < done.metrics[name] <= 1.0, (name, done.metrics)
    assert done.metrics["recall@20"] >= done.metrics["recall@10"]


def test_cancel_stops_a_running_job(jobs: Client) -> None:
    job = jobs.submit_job("train", library="CURecBPR", config={"factors": 32, "epochs": 100000},
                          name="bpr-client-cancelled")
    events = jobs.watch(job.id, timeout=JOB_TIMEOUT)
    for event in events:
        if event.state is JobState.RUNNING and event.stage == "train" and event.step >= 1:
            break
        assert not event.final, "the job ended before it could be cancelled: %s" % (event,)
    cancelled = jobs.cancel_job(job.id)
    assert cancelled.id == job.id
    rest = list(events)  # the same stream goes on until the final event
    assert rest and rest[-1].final and rest[-1].state is JobState.CANCELLED
    assert jobs.get_job(job.id).state is JobState.CANCELLED

    with pytest.raises(CurecError) as failure:
        jobs.cancel_job(job.id)
    assert failure.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_watching_an_ended_job_gives_its_final_state(jobs: Client) -> None:
    job = jobs.submit_job("evaluate", plugin="popularity", split="validation", cutoffs="10")
    jobs.wait_job(job.id, timeout=JOB_TIMEOUT)
    events = list(jobs.watch(job.id, timeout=30))
    assert events[-1].final and events[-1].state is JobState.SUCCEEDED


def test_list_jobs_filters_by_kind_state_and_limit(jobs: Client) -> None:
    job = jobs.submit_job("evaluate", plugin="bpr", split="test", cutoffs="10")
    jobs.wait_job(job.id, timeout=JOB_TIMEOUT)
    evaluations = jobs.list_jobs(kind="evaluate")
    assert evaluations and all(j.kind == "evaluate" for j in evaluations)
    assert evaluations[0].id == job.id  # newest first
    succeeded = jobs.list_jobs(state=JobState.SUCCEEDED)
    assert job.id in {j.id for j in succeeded}
    assert all(j.state is JobState.SUCCEEDED for j in succeeded)
    assert [j.id for j in jobs.list_jobs(state="succeeded", kind="evaluate")] == [
        j.id for j in evaluations if j.state is JobState.SUCCEEDED
    ]
    assert len(jobs.list_jobs(limit=1)) == 1


@pytest.mark.parametrize(
    "kind, parameters",
    [
        ("no-such-kind", {}),
        ("evaluate", {"split": "no-such-split"}),
        ("train", {"config": "{}"}),
        ("train", {"library": "CURecBPR", "serve": "maybe"}),
        ("evaluate", {"cutoffs": "ten"}),
    ],
    ids=["unknown-kind", "bad-split", "no-library", "bad-serve", "bad-cutoffs"],
)
def test_bad_submissions_are_invalid_argument(jobs: Client, kind: str, parameters: dict) -> None:
    with pytest.raises(CurecError) as failure:
        jobs.submit_job(kind, parameters)
    assert failure.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.value.message


def test_a_failing_job_ends_failed_with_its_error(jobs: Client) -> None:
    # The config is only parsed when the job runs, so the job is accepted and then fails.
    job = jobs.submit_job("train", library="CURecBPR", config="{not json", name="bpr-client-bad")
    events = list(jobs.watch(job.id, timeout=JOB_TIMEOUT))
    assert events[-1].final and events[-1].state is JobState.FAILED
    done = jobs.get_job(job.id)
    assert done.state is JobState.FAILED and "config" in done.error
    assert events[-1].error == done.error


def test_unknown_job_is_not_found(jobs: Client) -> None:
    for call in (lambda: jobs.get_job("job-none"), lambda: jobs.cancel_job("job-none"),
                 lambda: list(jobs.watch("job-none", timeout=10))):
        with pytest.raises(CurecError) as failure:
            call()
        assert failure.value.code == grpc.StatusCode.NOT_FOUND


def test_job_state_parse() -> None:
    assert JobState.parse("running") is JobState.RUNNING
    assert JobState.parse("JOB_STATE_FAILED") is JobState.FAILED
    assert JobState.parse(3) is JobState.SUCCEEDED
    assert JobState.CANCELLED.finished and not JobState.QUEUED.finished
    with pytest.raises(ValueError):
        JobState.parse("sleeping")
