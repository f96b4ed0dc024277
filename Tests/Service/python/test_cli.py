"""The curec CLI against the service-test daemon: human and JSON output, errors as the
server's status and message with exit code 1."""

import json
import os
import subprocess

from conftest import REPO_ROOT


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
