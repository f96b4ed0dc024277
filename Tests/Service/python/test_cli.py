"""The curec CLI against the service-test daemon: human and JSON output, errors as the
server's status and message with exit code 1."""

import json
import os
import subprocess
import tempfile

import pytest

from conftest import REPO_ROOT, RunningDaemon


def curec(daemon, *args):
    binary = os.path.join(os.path.dirname(os.path.join(REPO_ROOT, os.environ.get("CURECD") or ".build/debug/curecd")), "curec")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, CUREC_ADDRESS=daemon.address))


def test_recommend_and_health(daemon):
    result = curec(daemon, "recommend", "196", "--k", "3")
    assert result.returncode == 0, result.stderr
    assert "top 3 for user 196" in result.stdout and result.stdout.count("\n") == 4
    assert curec(daemon, "health").stdout.strip() == "SERVING"


def test_jobs_submit_watch_and_get_as_json(daemon):
    result = curec(daemon, "jobs", "submit", "train", "library=CURecPopularity", "name=cli-popularity", "--watch")
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout and "saved models/cli-popularity/v1" in result.stdout
    job_id = result.stdout.split()[1]
    record = json.loads(curec(daemon, "jobs", "get", job_id, "--json").stdout)
    assert record["state"] == "JOB_STATE_SUCCEEDED" and record["artifact"] == "models/cli-popularity/v1"


def test_errors_show_the_server_status_and_exit_1(daemon):
    result = curec(daemon, "recommend", "999999")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: NOT_FOUND: user_id '999999' is not a user of dataset ml-100k (943 users)"
    result = curec(daemon, "jobs", "submit", "bake")
    assert result.returncode == 1 and "INVALID_ARGUMENT: unknown job kind 'bake'" in result.stderr


def test_report_before_any_pipeline_is_not_found(daemon, tmp_path):
    # The suite's daemon has no MiniLM, so it never runs a pipeline and has no report.
    result = curec(daemon, "report")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: NOT_FOUND: no report 'report' exists yet") and "pipeline" in result.stderr
    out = tmp_path / "report"
    result = curec(daemon, "report", "--out", str(out), "--json")
    assert result.returncode == 1 and "NOT_FOUND" in result.stderr and not out.exists()


def test_reason_source_table_needs_a_reason_table(daemon):
    result = curec(daemon, "recommend", "196", "--k", "3", "--reasons", "--reason-source", "table")
    assert result.returncode == 1
    assert result.stderr.startswith("error: FAILED_PRECONDITION: no reason table exists yet")
    result = curec(daemon, "recommend", "196", "--reasons", "--reason-source", "best")
    assert result.returncode != 0 and "auto" in result.stderr and "generate" in result.stderr


REPORT_FILES = {
    "report.md": b"# CURec report\n\nFull CURec beat the ID-only variant.\n",
    "ablation.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>\n",
    "results.json": b'{"variants": []}\n',
}


@pytest.fixture(scope="module")
def daemon_with_report():
    """A daemon whose data directory already holds a report artifact laid out as the
    pipeline job publishes it (models/report/vN/ with metadata.json)."""
    data_dir = tempfile.mkdtemp(prefix="curec-cli-report-")
    version = os.path.join(data_dir, "models", "report", "v1")
    os.makedirs(version)
    for name, content in REPORT_FILES.items():
        with open(os.path.join(version, name), "wb") as f:
            f.write(content)
    with open(os.path.join(version, "metadata.json"), "w") as f:
        json.dump({"kind": "report", "profile": "quick"}, f)
    running = RunningDaemon(data_dir=data_dir)
    yield running
    assert running.stop() == 0, running.log_tail()


def test_report_prints_markdown_json_and_writes_files(daemon_with_report, tmp_path):
    result = curec(daemon_with_report, "report")
    assert result.returncode == 0, result.stderr
    assert result.stdout == REPORT_FILES["report.md"].decode()

    summary = json.loads(curec(daemon_with_report, "report", "--json").stdout)
    assert summary["name"] == "report" and summary["version"] == "v1"
    assert summary["metadata"]["profile"] == "quick"
    assert {f["name"]: f["bytes"] for f in summary["files"]} == {n: len(c) for n, c in REPORT_FILES.items()}

    out = tmp_path / "nested" / "report"
    result = curec(daemon_with_report, "report", "--version", "v1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "report report/v1: 3 files"
    assert sorted(lines[1:]) == sorted(str(out / name) for name in REPORT_FILES)
    for name, content in REPORT_FILES.items():
        assert (out / name).read_bytes() == content

    result = curec(daemon_with_report, "report", "--version", "v9")
    assert result.returncode == 1 and result.stderr.strip() == "error: NOT_FOUND: report 'report' has no version 'v9' (have v1)"
