"""Hostile clients against what the daemon trusts: plugin libraries, names, job parameters,
job state across crashes, and long status messages. Every probe is bounded and on
loopback; after each the daemon must still answer health and return to the memory it had
before the probe."""

import os
import signal
import subprocess
import tempfile

import grpc
import pytest

from curec_client._proto.curec.v1 import job_pb2, job_pb2_grpc, plugin_pb2, plugin_pb2_grpc
from conftest import REPO_ROOT, RunningDaemon, assert_memory_returns_to, resident_mib

def curec_binary():
    return os.path.join(os.path.dirname(os.path.join(REPO_ROOT, os.environ.get("CURECD") or ".build/debug/curecd")), "curec")


HEADER_DIR = os.path.join(REPO_ROOT, "Sources", "CURecPluginABI", "include")
FINAL = {job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED}

# A library whose constructor leaves a file behind: if it ever runs inside the daemon, the
# file exists. It also exports the ABI version symbol, so it looks like a plugin.
CONSTRUCTOR_SOURCE = r"""
#include <fcntl.h>
#include <unistd.h>
#include <stdint.h>
__attribute__((constructor)) static void ran(void) {
    int fd = open(MARKER, O_CREAT | O_WRONLY, 0644);
    if (fd >= 0) close(fd);
}
uint32_t curec_plugin_abi_version(void) { return 1u << 16; }
"""


def health_answers(channel):
    """grpc.health.v1.Health/Check for the whole server answers SERVING within a second
    (an empty request; the reply is field 1, status, = 1)."""
    check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)
    assert check(b"", timeout=1) == b"\x08\x01"


def build_constructor_library(path, marker):
    source = path + ".c"
    with open(source, "w") as handle:
        handle.write(CONSTRUCTOR_SOURCE)
    subprocess.run(["cc", "-shared", "-fPIC", '-DMARKER="%s"' % marker, "-o", path, source], check=True)


@pytest.fixture(scope="module")
def plugins(channel):
    return plugin_pb2_grpc.PluginServiceStub(channel)


@pytest.fixture(scope="module")
def jobs(channel):
    return job_pb2_grpc.JobServiceStub(channel)


@pytest.fixture(scope="module")
def planted(daemon):
    """A constructor library outside the plugin directories, one linked into the plugin
    directory from outside, and one installed there; with the marker each would create."""
    outside = tempfile.mkdtemp(prefix="curec-outside-")
    markers = {}
    for name in ("outside", "linked", "installed"):
        markers[name] = os.path.join(outside, "ran-" + name)
    build_constructor_library(os.path.join(outside, "libevil.so"), markers["outside"])
    build_constructor_library(os.path.join(outside, "liblinked-target.so"), markers["linked"])
    plugin_dir = os.path.join(daemon.data_dir, "plugins")
    os.makedirs(plugin_dir, exist_ok=True)
    os.symlink(os.path.join(outside, "liblinked-target.so"), os.path.join(plugin_dir, "liblinked.so"))
    build_constructor_library(os.path.join(plugin_dir, "libinstalled.so"), markers["installed"])
    os.makedirs(os.path.join(outside, "adir.so"))
    return outside, plugin_dir, markers


@pytest.fixture(autouse=True)
def returns_to_its_memory_baseline(daemon):
    """The shared daemon's resident memory after each case drops back to what it was before
    (within allocator slack): a refused or cancelled request keeps nothing."""
    baseline = resident_mib(daemon.proc.pid)
    yield
    if daemon.proc.poll() is None:
        assert_memory_returns_to(daemon.proc.pid, baseline, "after the case")


def mapped_plugin_copies(daemon):
    """The distinct plugin-library copies (under the data directory's plugin-cache) that the
    daemon process has mapped, from /proc/PID/maps."""
    cache = os.path.realpath(os.path.join(daemon.data_dir, "plugin-cache")) + "/"
    copies = set()
    with open("/proc/%d/maps" % daemon.proc.pid) as maps:
        for line in maps:
            path = line.split(None, 5)[5].strip() if len(line.split(None, 5)) == 6 else ""
            if path.endswith(" (deleted)"):
                path = path[:-len(" (deleted)")]
            if path.startswith(cache):
                copies.add(path)
    return copies


def refusal(call):
    with pytest.raises(grpc.RpcError) as failure:
        call()
    return failure.value.code(), failure.value.details()


def test_no_path_a_client_names_is_opened(channel, plugins, jobs, planted, daemon):
    outside, plugin_dir, markers = planted
    relative = os.path.relpath(os.path.join(outside, "libevil.so"), plugin_dir)
    for library in (os.path.join(outside, "libevil.so"), relative, "../" * 12 + outside.lstrip("/") + "/libevil.so",
                    os.path.join(outside, "adir.so"), "/etc/passwd", "..", "."):
        code, details = refusal(lambda: plugins.Load(plugin_pb2.LoadPluginRequest(name="evil", library=library), timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (library, details)
        assert "not a plain file name" in details
        code, _ = refusal(lambda: plugins.Reload(plugin_pb2.ReloadPluginRequest(name="bpr", library=library), timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        code, _ = refusal(lambda: jobs.Submit(job_pb2.SubmitJobRequest(
            kind="train", parameters={"library": library, "name": "evil"}), timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        health_answers(channel)
    # A link in the plugin directory that leads out of it is not found, like a missing file:
    # the answer does not tell whether anything exists elsewhere.
    code, linked = refusal(lambda: plugins.Load(plugin_pb2.LoadPluginRequest(name="evil", library="liblinked.so"), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND
    code, missing = refusal(lambda: plugins.Load(plugin_pb2.LoadPluginRequest(name="evil", library="libmissing.so"), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND
    assert linked.replace("liblinked.so", "X") == missing.replace("libmissing.so", "X")
    assert outside not in linked and plugin_dir not in linked
    assert not os.path.exists(markers["outside"]) and not os.path.exists(markers["linked"])
    # Nothing was staged for loading: the daemon's plugin cache holds only what it loaded.
    cache = os.path.join(daemon.data_dir, "plugin-cache")
    staged = [name for _, _, files in os.walk(cache) for name in files]
    assert not any("evil" in name or "linked" in name or "passwd" in name for name in staged)
    health_answers(channel)


def test_listing_opens_no_library(channel, plugins, planted):
    _, _, markers = planted
    listed = plugins.List(plugin_pb2.ListPluginsRequest(), timeout=10).available_libraries
    assert "libinstalled.so" in listed and "liblinked.so" not in listed
    assert not os.path.exists(markers["installed"]), "listing ran a library's constructor"
    health_answers(channel)


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "", "x" * 65, "lm", "report", "curec", "smollm2", "curec-reasons"])
def test_instance_names_are_checked_and_the_daemons_own_are_reserved(channel, plugins, jobs, name):
    code, details = refusal(lambda: plugins.Load(plugin_pb2.LoadPluginRequest(name=name, library="CURecPopularity"), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert len(details) < 400
    if name:
        code, _ = refusal(lambda: jobs.Submit(job_pb2.SubmitJobRequest(
            kind="train", parameters={"library": "CURecPopularity", "name": name}), timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    health_answers(channel)


def test_a_70000_character_id_gets_a_prompt_short_invalid_argument(channel, jobs, plugins):
    long = "j" * 70_000
    calls = [
        lambda: jobs.Get(job_pb2.GetJobRequest(id=long), timeout=5),
        lambda: jobs.Cancel(job_pb2.CancelJobRequest(id=long), timeout=5),
        lambda: list(jobs.Watch(job_pb2.WatchJobRequest(id=long), timeout=5)),
        lambda: jobs.List(job_pb2.ListJobsRequest(page_token=long), timeout=5),
        lambda: jobs.Submit(job_pb2.SubmitJobRequest(kind=long), timeout=5),
        lambda: plugins.Load(plugin_pb2.LoadPluginRequest(name=long, library="CURecBPR"), timeout=5),
        lambda: plugins.Load(plugin_pb2.LoadPluginRequest(name="x", library=long), timeout=5),
        lambda: plugins.Unload(plugin_pb2.UnloadPluginRequest(name=long), timeout=5),
    ]
    for call in calls:
        code, details = refusal(call)
        assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), (code, details[:80])
        assert len(details.encode()) <= 1024
    health_answers(channel)


def test_job_parameters_are_bounded(channel, jobs):
    for kind, parameters, words in [
        ("train", {"library": "CURecBPR", "config": "x" * 70_000}, "larger than 65536 bytes"),
        ("pretrain", {"width": "2048", "layers": "24", "context": "2048", "batch": "256"}, "GiB to train"),
        ("pipeline", {"seeds": ",".join(str(i) for i in range(100))}, "at most 16"),
        ("finetune", {"dataset": "d", "output": "o", "batch": "64", "max_length": "2048"}, "tokens per step"),
        ("train", {"library": "CURecBPR", "config": '{"epochs": 1000000000}'}, None),
    ]:
        if words is None:
            continue  # checked below: the plugin refuses it when the job creates it
        code, details = refusal(lambda: jobs.Submit(job_pb2.SubmitJobRequest(kind=kind, parameters=parameters), timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (kind, details)
        assert words in details, details
    job = jobs.Submit(job_pb2.SubmitJobRequest(kind="train", parameters={
        "library": "CURecBPR", "config": '{"epochs": 1000000000}', "name": "huge-epochs"}), timeout=10)
    for event in jobs.Watch(job_pb2.WatchJobRequest(id=job.id), timeout=120):
        if event.final:
            assert event.state == job_pb2.JOB_STATE_FAILED and "epochs must be 0...100000" in event.error
            break
    health_answers(channel)


@pytest.mark.parametrize("config, words", [
    ('{"epochs": 1000000000}', "epochs must be 0...100000"),
    ('{"patience": 1000000000}', "patience must be 0...100000"),
    ('{"max_length": 100000}', "max_length must be 1...1024"),
    ('{"width": 65536}', "width must be 1...1024"),
    ('{"blocks": 1000}', "blocks must be 1...16"),
    ('{"heads": 64, "width": 64}', "heads must be 1...16"),
    ('{"hidden": 1000000}', "hidden must be 1...4096"),
    ('{"batch_size": 100000}', "batch_size must be 1...4096"),
    ('{"max_length": 1024, "batch_size": 4096, "blocks": 16}', "values per training step"),
])
def test_sasrec_sizes_are_bounded(channel, plugins, jobs, config, words):
    """A SASRec config beyond its bounds is refused when the plugin is created, by Load at
    once and by a train job as its failure, naming the field; nothing is allocated for it."""
    code, details = refusal(lambda: plugins.Load(plugin_pb2.LoadPluginRequest(
        name="sasrec-huge", library="CURecSASRec", config=config.encode()), timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert words in details and len(details) < 400, details
    job = jobs.Submit(job_pb2.SubmitJobRequest(kind="train", parameters={
        "library": "CURecSASRec", "config": config, "name": "sasrec-huge"}), timeout=10)
    final = wait_for_state(jobs, job.id, FINAL, timeout=120)
    assert final.state == job_pb2.JOB_STATE_FAILED and words in final.error, final
    health_answers(channel)


def test_loading_an_unchanged_library_again_maps_no_more_copies(channel, plugins, daemon):
    """Load and Unload of one plugin library, over and over: the library file is unchanged,
    so its one mapping is shared and the daemon maps no new copy per load."""
    plugins.Load(plugin_pb2.LoadPluginRequest(name="mapped-once", library="CURecPopularity"), timeout=30)
    plugins.Unload(plugin_pb2.UnloadPluginRequest(name="mapped-once"), timeout=10)
    before = mapped_plugin_copies(daemon)
    assert before, "no plugin copy is mapped after a load"
    for round in range(25):
        plugins.Load(plugin_pb2.LoadPluginRequest(name="mapped-once", library="CURecPopularity"), timeout=30)
        plugins.Reload(plugin_pb2.ReloadPluginRequest(name="mapped-once"), timeout=30)
        plugins.Unload(plugin_pb2.UnloadPluginRequest(name="mapped-once"), timeout=10)
    assert mapped_plugin_copies(daemon) == before
    health_answers(channel)


def mapping_count(pid):
    """The number of mappings of process `pid` (lines of /proc/PID/maps)."""
    with open("/proc/%d/maps" % pid) as maps:
        return sum(1 for _ in maps)


def worker_children(pid):
    """The process IDs of `pid`'s living children (its plugin workers)."""
    children = set()
    for task in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, task)) as listed:
            children.update(int(child) for child in listed.read().split())
    return children


def test_isolated_load_unload_cycles_return_memory_and_mappings(channel, plugins, daemon):
    """200 Load/Unload cycles of an isolated instance: each Unload ends its worker, so the
    daemon keeps no child, its mapping count stays where it was and its resident memory
    returns to its baseline (an in-process library stays mapped for good, see above)."""
    pid = daemon.proc.pid

    def cycle():
        plugins.Load(plugin_pb2.LoadPluginRequest(
            name="cycled", library="CURecPopularity", isolation=plugin_pb2.PLUGIN_ISOLATION_PROCESS), timeout=30)
        plugins.Unload(plugin_pb2.UnloadPluginRequest(name="cycled"), timeout=30)

    plugins.Load(plugin_pb2.LoadPluginRequest(
        name="cycled", library="CURecPopularity", isolation=plugin_pb2.PLUGIN_ISOLATION_PROCESS), timeout=30)
    assert len(worker_children(pid)) == 1, "an isolated instance runs in a child process"
    plugins.Unload(plugin_pb2.UnloadPluginRequest(name="cycled"), timeout=30)
    assert not worker_children(pid), "Unload ends the worker"
    for _ in range(20):
        cycle()
    children, maps_before, rss_before = worker_children(pid), mapping_count(pid), resident_mib(pid)
    for _ in range(200):
        cycle()
    assert worker_children(pid) == children
    assert mapping_count(pid) <= maps_before + 16, (maps_before, mapping_count(pid))
    assert_memory_returns_to(pid, rss_before, "after 200 isolated load/unload cycles")
    health_answers(channel)


def test_list_is_paged(channel, jobs):
    seen = []
    token = ""
    while True:
        page = jobs.List(job_pb2.ListJobsRequest(page_size=2, page_token=token), timeout=10)
        assert len(page.jobs) <= 2
        seen += [job.id for job in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen))
    everything = jobs.List(job_pb2.ListJobsRequest(page_size=1000), timeout=10).jobs
    assert [job.id for job in everything] == seen
    code, _ = refusal(lambda: jobs.List(job_pb2.ListJobsRequest(page_size=100_000), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    health_answers(channel)


def wait_for_state(stub, job_id, states, timeout=300):
    events = stub.Watch(job_pb2.WatchJobRequest(id=job_id), timeout=timeout)
    try:
        for event in events:
            if event.state in states:
                return event
    finally:
        events.cancel()
    raise AssertionError("job %s ended its events before reaching %s" % (job_id, states))


SLOW = {"library": "CURecBPR", "config": '{"factors": 8, "epochs": 100000}', "name": "slow"}


def test_a_cancellation_survives_a_crash():
    data_dir = tempfile.mkdtemp(prefix="curec-cancel-")
    daemon = RunningDaemon("--no-plugins", data_dir=data_dir)
    try:
        channel = grpc.insecure_channel(daemon.address)
        stub = job_pb2_grpc.JobServiceStub(channel)
        job = stub.Submit(job_pb2.SubmitJobRequest(kind="train", parameters=SLOW), timeout=10)
        wait_for_state(stub, job.id, {job_pb2.JOB_STATE_RUNNING})
        stub.Cancel(job_pb2.CancelJobRequest(id=job.id), timeout=10)
        channel.close()
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait()
        daemon.log.close()

        daemon = RunningDaemon("--no-plugins", data_dir=data_dir)
        channel = grpc.insecure_channel(daemon.address)
        stub = job_pb2_grpc.JobServiceStub(channel)
        record = stub.Get(job_pb2.GetJobRequest(id=job.id), timeout=10)
        assert record.state == job_pb2.JOB_STATE_CANCELLED, record
        health_answers(channel)
        channel.close()
    finally:
        assert daemon.stop() == 0


def test_a_job_that_keeps_crashing_the_daemon_is_failed_not_rerun():
    data_dir = tempfile.mkdtemp(prefix="curec-crashloop-")
    daemon = RunningDaemon("--no-plugins", "--job-crash-limit", "2", data_dir=data_dir)
    job_id = None
    try:
        for crash in range(2):
            channel = grpc.insecure_channel(daemon.address)
            stub = job_pb2_grpc.JobServiceStub(channel)
            if job_id is None:
                job_id = stub.Submit(job_pb2.SubmitJobRequest(kind="train", parameters=SLOW), timeout=10).id
            wait_for_state(stub, job_id, {job_pb2.JOB_STATE_RUNNING})
            channel.close()
            daemon.proc.send_signal(signal.SIGKILL)  # as a crash in the job would
            daemon.proc.wait()
            daemon.log.close()
            daemon = RunningDaemon("--no-plugins", "--job-crash-limit", "2", data_dir=data_dir)
        channel = grpc.insecure_channel(daemon.address)
        stub = job_pb2_grpc.JobServiceStub(channel)
        record = stub.Get(job_pb2.GetJobRequest(id=job_id), timeout=10)
        assert record.state == job_pb2.JOB_STATE_FAILED, record
        assert "the daemon stopped 2 times while this job ran" in record.error
        # The operator sees why with the CLI.
        shown = subprocess.run([curec_binary(), "jobs", "get", job_id], capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, CUREC_ADDRESS=daemon.address))
        assert shown.returncode == 0, shown.stderr
        assert "state:     failed" in shown.stdout, shown.stdout
        assert "error:     " in shown.stdout and "the daemon stopped 2 times while this job ran" in shown.stdout, shown.stdout
        health_answers(channel)
        channel.close()
    finally:
        assert daemon.stop() == 0


def test_load_that_trains_is_a_job_its_caller_cancels_by_leaving(channel, plugins, jobs):
    """Load(train=true) of a slow config with a 3 s deadline: the call ends, its training
    job is cancelled and nothing is left loaded; administration carries on."""
    slow = b'{"factors": 8, "epochs": 100000}'
    code, _ = refusal(lambda: plugins.Load(plugin_pb2.LoadPluginRequest(
        name="slow-load", library="CURecBPR", config=slow, train=True), timeout=3))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    trains = jobs.List(job_pb2.ListJobsRequest(kind="train", page_size=20), timeout=10).jobs
    job = next(j for j in trains if j.parameters.get("name") == "slow-load")
    assert job.parameters["serve"] == "true"
    final = wait_for_state(jobs, job.id, FINAL, timeout=120)
    assert final.state == job_pb2.JOB_STATE_CANCELLED, final
    assert "slow-load" not in [p.name for p in plugins.List(plugin_pb2.ListPluginsRequest(), timeout=10).plugins]
    # The training ran in the job, not under the host's admin lock: loading goes on.
    plugins.Load(plugin_pb2.LoadPluginRequest(name="quick-load", library="CURecPopularity"), timeout=10)
    plugins.Unload(plugin_pb2.UnloadPluginRequest(name="quick-load"), timeout=10)
    health_answers(channel)
