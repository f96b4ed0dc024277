"""Dynamic batching of a SASRec instance loaded with PluginService.Load(dynamic_batching):
concurrent Recommend and Score calls wait in the instance's queue and run as batched calls,
and `/metrics` shows it (inferences / executions > 1); the answers equal the unbatched
instance's."""

import concurrent.futures
import urllib.request

import grpc
import pytest

from curec_client._proto.curec.v1 import plugin_pb2, plugin_pb2_grpc, recommend_pb2, recommend_pb2_grpc

# Small and quick to train; the same config (and so the same saved artifact) for both instances.
SASREC_CONFIG = b'{"epochs": 2, "width": 16, "blocks": 1, "max_length": 20, "seed": 3}'
USERS = [str(user) for user in range(1, 33)]


def scrape(daemon):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % daemon.metrics_port, timeout=30) as response:
        return response.read().decode("utf-8")


def sample(text, name, **labels):
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head.startswith(name + "{") and all('%s="%s"' % kv in head for kv in labels.items()):
            return float(value)
    return 0.0


@pytest.fixture(scope="module")
def sasrec_pair(channel):
    """An unbatched SASRec (trained by a job) and a batched one loaded from the same artifact."""
    plugins = plugin_pb2_grpc.PluginServiceStub(channel)
    plain = plugins.Load(plugin_pb2.LoadPluginRequest(name="sasrec-plain", library="CURecSASRec",
                                                      config=SASREC_CONFIG, train=True), timeout=1200)
    assert plain.trained and plain.max_batch_size > 0 and not plain.HasField("dynamic_batching")
    batching = plugin_pb2.DynamicBatching(max_queue_delay_microseconds=200_000, preferred_batch_size=[4, 8],
                                          max_queue_size=256)
    batched = plugins.Load(plugin_pb2.LoadPluginRequest(name="sasrec-batched", library="CURecSASRec",
                                                        config=SASREC_CONFIG, train=True,
                                                        dynamic_batching=batching), timeout=1200)
    assert batched.trained
    assert batched.dynamic_batching.max_batch_size == batched.max_batch_size
    assert list(batched.dynamic_batching.preferred_batch_size) == [4, 8]
    assert batched.dynamic_batching.max_queue_size == 256
    listed = {p.name: p for p in plugins.List(plugin_pb2.ListPluginsRequest(), timeout=10).plugins}
    assert listed["sasrec-batched"].dynamic_batching.max_queue_delay_microseconds == 200_000
    yield plain, batched
    for name in ("sasrec-plain", "sasrec-batched"):
        plugins.Unload(plugin_pb2.UnloadPluginRequest(name=name), timeout=10)


def test_concurrent_recommend_calls_run_as_batches(daemon, channel, sasrec_pair):
    stub = recommend_pb2_grpc.RecommendServiceStub(channel)
    before = scrape(daemon)

    def recommend(user, plugin):
        return stub.Recommend(recommend_pb2.RecommendRequest(user_id=user, k=10, plugin=plugin), timeout=120)

    with concurrent.futures.ThreadPoolExecutor(len(USERS)) as pool:
        batched = list(pool.map(lambda user: recommend(user, "sasrec-batched"), USERS))
    after = scrape(daemon)
    plain = [recommend(user, "sasrec-plain") for user in USERS]

    # Each caller got its own user's answer: the same items as the unbatched instance's.
    for user, got, want in zip(USERS, batched, plain):
        assert got.served_by.startswith("sasrec-batched@")
        assert [item.item_id for item in got.items] == [item.item_id for item in want.items], user
        for a, b in zip(got.items, want.items):
            assert abs(a.score - b.score) <= 1e-3 * max(1.0, abs(b.score))

    def grew(name):
        return sample(after, name, model="sasrec-batched", method="recommend") \
            - sample(before, name, model="sasrec-batched", method="recommend")

    inferences, executions = grew("curec_model_inferences_total"), grew("curec_model_executions_total")
    assert inferences == len(USERS)
    assert 1 <= executions < len(USERS), "no batch held more than one request"
    assert inferences / executions > 1
    assert grew("curec_model_request_success_total") == len(USERS)
    assert grew("curec_model_queue_duration_seconds_count") == len(USERS)


def test_concurrent_score_calls_leave_the_loop_and_batch(daemon, channel, sasrec_pair):
    stub = recommend_pb2_grpc.RecommendServiceStub(channel)
    items = ["1", "50", "181", "258"]

    def score(user, plugin):
        return stub.Score(recommend_pb2.ScoreRequest(user_id=user, item_ids=items, plugin=plugin), timeout=120)

    before = scrape(daemon)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        batched = list(pool.map(lambda user: score(user, "sasrec-batched"), USERS[:16]))
    after = scrape(daemon)
    for user, got in zip(USERS[:16], batched):
        want = score(user, "sasrec-plain")
        assert len(got.scores) == len(items)
        assert all(abs(a - b) <= 1e-3 * max(1.0, abs(b)) for a, b in zip(got.scores, want.scores))
    executions = sample(after, "curec_model_executions_total", model="sasrec-batched", method="score") \
        - sample(before, "curec_model_executions_total", model="sasrec-batched", method="score")
    inferences = sample(after, "curec_model_inferences_total", model="sasrec-batched", method="score") \
        - sample(before, "curec_model_inferences_total", model="sasrec-batched", method="score")
    assert inferences == 16 and executions < 16

    # A request for an unknown user is refused before it queues.
    with pytest.raises(grpc.RpcError) as unknown:
        score("no-such-user", "sasrec-batched")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
