"""The curec CLI against the service-test daemon: human and JSON output, errors as the
server's status and message with exit code 1. The generate tests need the daemon's
GenerationService.Generate with its base model "smollm2"."""

import json
import os
import re
import subprocess
import tempfile

import pytest

from conftest import REPO_ROOT, RunningDaemon


def curec_binary():
    return os.path.join(os.path.dirname(os.path.join(REPO_ROOT, os.environ.get("CURECD") or ".build/debug/curecd")), "curec")


def curec(daemon, *args, input=None):
    return subprocess.run([curec_binary(), *args], capture_output=True, text=True, timeout=300, input=input,
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


def chat_line(i):
    return json.dumps({"messages": [{"role": "user", "content": "Why watch film %d? %s" % (i, "x" * 200)},
                                    {"role": "assistant", "content": "Because it is number %d. 😀" % i}]})


def test_datasets_upload_in_chunks_and_list(daemon, tmp_path):
    path = tmp_path / "films.jsonl"
    path.write_text("".join(chat_line(i) + "\n" for i in range(3000)), encoding="utf-8")
    size = path.stat().st_size
    assert size > 2 * 256 * 1024  # several 256 KiB upload messages
    result = curec(daemon, "datasets", "upload", "cli-films", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "uploaded cli-films v1: 3000 examples, %d bytes\n" % size

    small = "".join(chat_line(i) + "\n" for i in range(3))
    piped = curec(daemon, "datasets", "upload", "cli-films", "-", "--json", input=small)
    assert piped.returncode == 0, piped.stderr
    record = json.loads(piped.stdout)
    assert record["name"] == "cli-films" and record["version"] == "v2" and int(record["examples"]) == 3

    listed = curec(daemon, "datasets", "list", "cli-films")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0][:4] == ["NAME", "VERSION", "EXAMPLES", "BYTES"]
    assert [row[:4] for row in rows[1:]] == [["cli-films", "v1", "3000", str(size)],
                                            ["cli-films", "v2", "3", str(len(small.encode()))]]
    everything = curec(daemon, "datasets", "list", "--json")
    assert "cli-films" in {json.loads(line)["name"] for line in everything.stdout.splitlines()}


def test_datasets_errors(daemon, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(chat_line(1) + "\n" + json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    result = curec(daemon, "datasets", "upload", "cli-bad", str(bad))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: INVALID_ARGUMENT: dataset line 2:"), result.stderr
    result = curec(daemon, "datasets", "list", "cli-bad")
    assert result.returncode == 1 and result.stderr.startswith("error: NOT_FOUND:")
    result = curec(daemon, "datasets", "upload", "cli-bad", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 1 and result.stderr.strip() == "error: no file %s" % (tmp_path / "missing.jsonl")
    result = curec(daemon, "datasets", "upload", "../escape", str(bad))
    assert result.returncode == 1 and result.stderr.startswith("error: INVALID_ARGUMENT: a dataset name")


# The generate tests run the daemon's pretrained base model "smollm2" (they need its Generate).

GENERATE_SUMMARY = re.compile(r"^finish=(stop|length) prompt_tokens=(\d+) completion_tokens=(\d+) model=(\S*)$")


def test_generate_streams_text_and_reports_the_finish(daemon):
    args = ["generate", "--system", "You are a helpful assistant who recommends films.",
            "--user", "Name one good science fiction film.", "--max-tokens", "16", "--seed", "1", "--temperature", "0.9"]
    result = curec(daemon, *args)
    assert result.returncode == 0, result.stderr
    summary = GENERATE_SUMMARY.match(result.stderr.strip())
    assert summary, result.stderr
    assert int(summary.group(2)) > 0 and 0 < int(summary.group(3)) <= 16 and "smollm2" in summary.group(4)
    assert result.stdout.strip() and result.stdout.endswith("\n")
    assert curec(daemon, *args).stdout == result.stdout  # the same seed, the same text

    streamed = curec(daemon, *args, "--json")
    assert streamed.returncode == 0 and streamed.stderr == ""
    messages = [json.loads(line) for line in streamed.stdout.splitlines()]
    assert [m.get("final", False) for m in messages] == [False] * (len(messages) - 1) + [True]
    final = messages[-1]
    assert "".join(m.get("text", "") for m in messages[:-1]) == final["full_text"]
    assert result.stdout.rstrip("\n") == final["full_text"].rstrip("\n")


def test_generate_from_a_prompt_with_messages_and_stop(daemon):
    result = curec(daemon, "generate", "--prompt", "Once upon a time", "--max-tokens", "4", "--temperature", "0")
    assert result.returncode == 0, result.stderr
    summary = GENERATE_SUMMARY.match(result.stderr.strip())
    assert summary and int(summary.group(3)) <= 4, result.stderr
    result = curec(daemon, "generate", "--message", "user:Say hello.", "--message", "assistant:Hello!",
                   "--user", "Again, please.", "--max-tokens", "8", "--stop", "\n", "--top-k", "20", "--top-p", "0.9",
                   "--repetition-penalty", "1.1", "--model", "smollm2")
    assert result.returncode == 0, result.stderr
    assert GENERATE_SUMMARY.match(result.stderr.strip()), result.stderr
    assert "\n" not in result.stdout[:-1]  # the stop string ends the text


def test_generate_errors(daemon):
    result = curec(daemon, "generate", "--user", "hi", "--model", "no-such-model")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: NOT_FOUND:"), result.stderr
    result = curec(daemon, "generate", "--user", "hi", "--max-tokens", "100000")
    assert result.returncode == 1 and result.stderr.startswith("error: INVALID_ARGUMENT:"), result.stderr


def test_generate_needs_an_input():
    # Checked by the CLI itself, so no daemon is needed.
    for args in [[], ["--prompt", "x", "--user", "y"], ["--message", "robot:beep"], ["--message", "no colon"]]:
        result = subprocess.run([curec_binary(), "generate", *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 64 and "Error:" in result.stderr, (args, result.stderr)
