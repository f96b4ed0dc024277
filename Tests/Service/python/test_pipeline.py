"""The CURec pipeline end to end through the Python client: submit the quick pipeline on
MovieLens-100K, watch it, then get recommendations with their reasons from the corrected
table, stream a generated reason, and fetch the report. Long (several minutes); marked
`pipeline` and run by scripts/test."""

import os
import xml.dom.minidom

import pytest

from conftest import REPO_ROOT, RunningDaemon

from curec_client import Client, CurecError

MINILM = os.path.join(REPO_ROOT, "var", "models", "all-MiniLM-L6-v2")

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def pipeline_daemon():
    if not os.path.exists(os.path.join(MINILM, "model.safetensors")):
        pytest.fail("MiniLM is missing: run scripts/fetch-minilm (scripts/test does)")
    running = RunningDaemon("--minilm-dir", MINILM, "--pipeline-on-start", "off")
    yield running
    assert running.stop() == 0, running.log_tail()


@pytest.fixture(scope="module")
def finished(pipeline_daemon):
    with Client(pipeline_daemon.address) as client:
        # Before any pipeline: no report, and table reasons are refused with a clear message.
        with pytest.raises(CurecError) as missing:
            client.report()
        assert missing.value.code.name == "NOT_FOUND"
        with pytest.raises(CurecError) as no_table:
            client.recommend("196", k=3, with_reasons=True, reason_source="table")
        assert no_table.value.code.name == "FAILED_PRECONDITION"
        assert "pipeline" in str(no_table.value)
        # Bad parameters are refused at submit.
        for parameters, words in [({"profile": "huge"}, "profile"), ({"stop_after": "grpo"}, "run=NAME"),
                                  ({"run": "x", "stop_after": "everything"}, "stop_after"), ({"seeds": "1,a"}, "seeds"),
                                  ({"align_steps": "0"}, "align_steps"), ({"pretrain_steps": "10"}, "pretrain_steps")]:
            with pytest.raises(CurecError) as bad:
                client.submit_job("pipeline", parameters)
            assert bad.value.code.name == "INVALID_ARGUMENT"
            assert words in str(bad.value)

        job = client.submit_job("pipeline", profile="quick")
        stages = []
        final = client.wait_job(job.id, timeout=3600,
                                on_event=lambda e: stages.append(e.stage) if e.stage and (not stages or stages[-1] != e.stage) else None)
        assert final.state.name == "SUCCEEDED", (final, pipeline_daemon.log_tail())
        return final, stages


def test_the_job_ran_every_stage_and_reports_metrics(finished):
    job, stages = finished
    for stage in ["align", "grpo", "reasons-curec", "downstream", "reason-quality"]:
        assert stage in stages, stages
    assert job.artifact.startswith("models/report/v")
    for variant in ["id", "content", "base", "aligned", "rl", "curec", "curec-no-content"]:
        assert 0 <= job.metrics[f"{variant}.ndcg@10"] <= 1
    assert job.metrics["seconds.align"] > 0


def test_recommendations_come_with_table_reasons(pipeline_daemon, finished):
    with Client(pipeline_daemon.address) as client:
        plugins = {p.name for p in client.plugins()}
        assert "curec" in plugins, plugins
        answer = client.recommend("196", k=50, plugin="curec", with_reasons=True)
        assert answer.served_by.startswith("curec@")
        assert len(answer) == 50
        with_reason = [item for item in answer if item.reason]
        # The corrected table leaves a few items without any surviving sentence; most have one.
        assert with_reason, "none of user 196's top 50 has a reason in the corrected table"
        for item in with_reason:
            assert item.reason_source == "table"
            assert "###" not in item.reason
        for item in answer:
            if not item.reason:
                assert item.reason_source == ""


def test_a_generated_reason_streams_from_the_tuned_model(pipeline_daemon, finished):
    with Client(pipeline_daemon.address) as client:
        lm = client.models("curec-reasons")[0]
        assert lm.latest is not None and lm.latest.metadata.get("stage") == "grpo"
        assert lm.latest.metadata.get("method") == "lora"
        text = "".join(client.generate_reason("196", "242", model="curec-reasons", seed=3, timeout=300))
        assert text.strip()


def test_the_report_is_retrievable_over_rpc(pipeline_daemon, finished, tmp_path):
    with Client(pipeline_daemon.address) as client:
        report = client.report()
    assert report.name == "report" and report.version.startswith("v")
    assert "CURec pipeline report" in report.markdown
    for label in ["item IDs only", "raw content", "base-model reasons", "aligned-model reasons", "GRPO reasons, no correction",
                  "full CURec", "no raw content"]:
        assert label in report.markdown
    assert " ± " in report.markdown
    for chart in ["ablation.svg", "grpo.svg", "pretrain-loss.svg"]:
        xml.dom.minidom.parseString(report.files[chart])
    assert "results.json" in report.files
    # The reason quality of served pair reasons, and the reason features chosen on validation.
    assert "## Reason quality" in report.markdown and "reason-quality.json" in report.files
    assert "chosen on validation only" in report.markdown
    saved = report.save(str(tmp_path))
    assert len(saved) == len(report.files)
