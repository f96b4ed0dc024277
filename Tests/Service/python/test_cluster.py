"""The cluster test: replicas behind nginx on one PostgreSQL job store (scripts/cluster).

Run by scripts/test as

    scripts/cluster --replicas 3 -- python3 -m pytest -m cluster Tests/Service/python/test_cluster.py

Score and Recommend load goes through nginx with the retrying Python client while

- one replica, running a train job, is killed with SIGKILL and comes back (its supervisor
  restarts it): no call fails; the job is reclaimed once its lease ends, resumes from its
  checkpoint in another daemon and ends with exactly the model an uninterrupted run makes;
- every replica in turn gets SIGTERM (a rolling restart; each drains, exits 0 and comes
  back before the next): no call fails and no job is lost;
- a model one replica's job publishes to be served is served by every replica (each loads
  it when the model registry announces it), with the same rankings.
"""

import os
import signal
import subprocess
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from curec_client import Client, CurecError, JobState

ADDRESS = os.environ.get("CUREC_CLUSTER_ADDRESS", "")
CLUSTER_DIR = os.environ.get("CUREC_CLUSTER_DIR", "")
DATABASE = os.environ.get("CUREC_CLUSTER_DATABASE", "")
REPLICAS = int(os.environ.get("CUREC_CLUSTER_REPLICAS", "0"))

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not ADDRESS or REPLICAS < 2, reason="needs a cluster (run under scripts/cluster)"),
]

BPR_CONFIG = '{"factors": 16, "epochs": 300, "checkpoint_every": 10, "seed": 23}'
# Long enough to be running through the whole rolling restart.
ROLLING_CONFIG = '{"factors": 16, "epochs": 700, "checkpoint_every": 25, "seed": 29}'
USERS = ["1", "13", "196", "305", "450", "655", "880"]
# Bounds of the load: it stops when the test is done, or after this many calls.
MAX_CALLS = 200_000


class Load:
    """Score and Recommend calls through nginx from a few threads until stopped; counts
    what succeeded and keeps every failure."""

    def __init__(self, threads=3):
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.succeeded = 0
        self.failures = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self, index):
        with Client(ADDRESS, timeout=30) as client:
            for n in range(MAX_CALLS):
                if self.stopped.is_set():
                    return
                user = USERS[(index + n) % len(USERS)]
                try:
                    if n % 2:
                        answer = client.recommend(user, k=5)
                        assert len(answer) == 5
                    else:
                        answer = client.score(user, ["1", "50", "100", "181"])
                        assert len(answer.scores) == 4
                except (CurecError, AssertionError) as error:
                    with self.lock:
                        self.failures.append("%s: %s" % (type(error).__name__, error))
                    continue
                with self.lock:
                    self.succeeded += 1

    def calls(self):
        with self.lock:
            return self.succeeded

    def wait_for_calls(self, more_than):
        """Waits until more than `more_than` calls succeeded (the load is flowing)."""
        done = threading.Event()
        while not done.wait(0.05):
            if self.calls() > more_than or self.failures:
                done.set()

    def stop(self):
        self.stopped.set()
        for thread in self.threads:
            thread.join()
        return self.succeeded, self.failures


def sql(query):
    result = subprocess.run(["psql", "-v", "ON_ERROR_STOP=1", "-qAt", DATABASE, "-c", query],
                            check=True, capture_output=True, text=True, timeout=60)
    return result.stdout.strip()


def owner_pid(job_id):
    """The pid of the daemon holding the job (owner is host/pid/random)."""
    return int(sql("SELECT owner FROM curec_job WHERE id = '%s'" % job_id).split("/")[1])


def job_log(job_id):
    return sql("SELECT log_line FROM curec_job_event WHERE job_id = '%s' AND log_line <> '' ORDER BY seq" % job_id
               ).splitlines()


def replica_pid(index):
    with open(os.path.join(CLUSTER_DIR, "replica-%d" % index, "pid")) as f:
        return int(f.read().strip() or 0)


def replica_serving(index, not_pid):
    """Whether replica `index` runs as a process other than `not_pid` and has written its
    port file (it writes it once it serves)."""
    directory = os.path.join(CLUSTER_DIR, "replica-%d" % index)
    try:
        pid = replica_pid(index)
        with open(os.path.join(directory, "port")) as f:
            ready = f.read().endswith("\n")
    except (FileNotFoundError, ValueError):
        return False
    return pid != not_pid and ready


def wait_until(condition, what, seconds=300):
    """Polls `condition` (a process's files or the database) every 0.1 s; the bound only
    guards against a hang."""
    event = threading.Event()
    for _ in range(int(seconds * 10)):
        if condition():
            return
        event.wait(0.1)
    raise AssertionError("timed out waiting for " + what)


def follow(client, job_id, predicate):
    """The first event of the job satisfying `predicate`, reopening the watch (on any
    replica nginx picks) when the replica it was on goes away."""
    while True:
        try:
            for event in client.watch(job_id, timeout=600):
                if predicate(event):
                    return event
                if event.final:
                    raise AssertionError("job %s ended (%s) without the event awaited" % (job_id, event.state))
        except CurecError:
            continue


def same_model(name_a, name_b):
    for name in ("user_factors.f32", "item_factors.f32", "item_bias.f32"):
        with open(os.path.join(CLUSTER_DIR, "data", "models", name_a, "v1", name), "rb") as a, \
                open(os.path.join(CLUSTER_DIR, "data", "models", name_b, "v1", name), "rb") as b:
            if a.read() != b.read():
                return False
    return True


def test_a_killed_replica_loses_no_call_and_its_job_resumes_elsewhere_with_the_same_model():
    with Client(ADDRESS, timeout=30) as client:
        reference = client.submit_job("train", library="CURecBPR", config=BPR_CONFIG, name="cluster-reference")
        follow(client, reference.id, lambda e: e.state == JobState.RUNNING)
        job = client.submit_job("train", library="CURecBPR", config=BPR_CONFIG, name="cluster-killed")
        follow(client, job.id, lambda e: e.state == JobState.RUNNING)
        victim_pid = owner_pid(job.id)
        victim = next(i for i in range(1, REPLICAS + 1) if replica_pid(i) == victim_pid)
        # Past two checkpoints, so the resume has something to resume from.
        follow(client, job.id, lambda e: e.step >= 25)

        load = Load()
        load.wait_for_calls(50)
        os.kill(victim_pid, signal.SIGKILL)
        wait_until(lambda: replica_serving(victim, victim_pid), "replica %d to come back" % victim)
        before = load.calls()
        load.wait_for_calls(before + 50)
        succeeded, failures = load.stop()
        assert not failures, "%d of %d calls failed: %s" % (len(failures), succeeded + len(failures), failures[:5])

        assert follow(client, job.id, lambda e: e.final).state == JobState.SUCCEEDED
        assert follow(client, reference.id, lambda e: e.final).state == JobState.SUCCEEDED
        record = client.get_job(job.id)
        assert record.attempts == 2, record
        resumed = [line for line in job_log(job.id) if line.startswith("resumed (attempt 2) on ")]
        assert resumed and "/%d/" % victim_pid not in resumed[0], job_log(job.id)
        assert record.metrics.get("resumed_from_epoch", 0) >= 20, record.metrics
        assert same_model("cluster-reference", "cluster-killed")


def test_a_rolling_restart_under_load_loses_no_call_and_no_job():
    with Client(ADDRESS, timeout=30) as client:
        jobs = [client.submit_job("train", library="CURecBPR", config=ROLLING_CONFIG, name="cluster-rolling-%d" % i)
                for i in range(2)]
        for job in jobs:
            follow(client, job.id, lambda e: e.state == JobState.RUNNING)
        load = Load()
        load.wait_for_calls(50)
        for index in range(1, REPLICAS + 1):
            pid = replica_pid(index)
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: replica_serving(index, pid), "replica %d to come back" % index)
            before = load.calls()
            load.wait_for_calls(before + 20)
        succeeded, failures = load.stop()
        assert not failures, "%d of %d calls failed: %s" % (len(failures), succeeded + len(failures), failures[:5])
        with open(os.path.join(CLUSTER_DIR, "events.log")) as f:
            exits = f.read().splitlines()
        assert len([line for line in exits if line.endswith("exited with status 0")]) >= REPLICAS, exits

        for job in jobs:
            assert follow(client, job.id, lambda e: e.final).state == JobState.SUCCEEDED, job_log(job.id)
        # A drain pauses a job (not a crash): none failed, none was lost.
        assert sql("SELECT count(*) FROM curec_job WHERE state NOT IN ('succeeded')") == "0", \
            sql("SELECT id, kind, state, error FROM curec_job")
        ids = ", ".join("'%s'" % job.id for job in jobs)
        assert sql("SELECT sum(crashes) FROM curec_job WHERE id IN (%s)" % ids) == "0"
        paused = [line for job in jobs for line in job_log(job.id) if line.startswith("paused by a shutdown")]
        assert paused, "no job was running on a replica that drained"
        assert same_model("cluster-rolling-0", "cluster-rolling-1")


def replica_address(index):
    with open(os.path.join(CLUSTER_DIR, "replica-%d" % index, "port")) as f:
        return "127.0.0.1:%d" % int(f.read())


def wait_for_health(address, service, wanted):
    """Follows the health of `service` on one replica (Health.Watch) until it is `wanted`."""
    with grpc.insecure_channel(address) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=service), timeout=300)
        for response in stream:
            if response.status == wanted:
                stream.cancel()
                return
    raise AssertionError("health of %s on %s never became %s" % (service, address, wanted))


def test_a_model_published_on_one_replica_is_served_by_all():
    name = "cluster-published"
    with Client(ADDRESS, timeout=30) as client:
        job = client.submit_job("train", library="CURecBPR", config='{"factors": 16, "epochs": 20, "seed": 7}',
                                name=name, serve=True)
        assert follow(client, job.id, lambda e: e.final).state == JobState.SUCCEEDED, job_log(job.id)
        publisher = owner_pid(job.id)
    rankings = []
    for index in range(1, REPLICAS + 1):
        address = replica_address(index)
        wait_for_health(address, "plugin/" + name, health_pb2.HealthCheckResponse.SERVING)
        with Client(address, timeout=30) as client:
            rankings.append(client.recommend("196", k=10, plugin=name).item_ids)
    # Every replica serves it now, so nginx may pick any.
    with Client(ADDRESS, timeout=30) as client:
        through_nginx = client.recommend("196", k=10, plugin=name).item_ids
    assert publisher in [replica_pid(i) for i in range(1, REPLICAS + 1)]
    assert all(ranking == through_nginx for ranking in rankings), rankings
