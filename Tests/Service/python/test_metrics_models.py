"""Per model and method series on `/metrics` for the trained plugins: Score, Recommend and
Reward count requests, executions and inferences under the plugin instance's name; a request
naming a model that is not loaded makes no series."""

import urllib.request

import grpc
import pytest

from curec_client._proto.curec.v1 import (plugin_pb2, plugin_pb2_grpc, recommend_pb2, recommend_pb2_grpc,
                                         reward_pb2, reward_pb2_grpc)


def scrape(daemon):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % daemon.metrics_port, timeout=30) as response:
        return response.read().decode("utf-8")


def sample(text, name, **labels):
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head.startswith(name + "{") and all('%s="%s"' % kv in head for kv in labels.items()):
            return float(value)
    return 0.0


def test_model_series_count_requests_executions_and_inferences(daemon, channel):
    recommend = recommend_pb2_grpc.RecommendServiceStub(channel)
    reward = reward_pb2_grpc.RewardServiceStub(channel)
    before = scrape(daemon)
    for _ in range(3):
        recommend.Score(recommend_pb2.ScoreRequest(user_id="196", item_ids=["1", "50"], plugin="bpr"), timeout=10)
    recommend.Recommend(recommend_pb2.RecommendRequest(user_id="196", k=5, plugin="popularity"), timeout=10)
    plugins = plugin_pb2_grpc.PluginServiceStub(channel).List(plugin_pb2.ListPluginsRequest(), timeout=10)
    dim = next(p.reason_embedding_dim for p in plugins.plugins if p.name == "reward")
    triples = [reward_pb2.RewardTriple(user_id="196", item_id="242", reason_embedding=[0.1] * dim)] * 4
    reward.Score(reward_pb2.RewardRequest(triples=triples, plugin="reward"), timeout=10)
    with pytest.raises(grpc.RpcError) as missing:
        recommend.Score(recommend_pb2.ScoreRequest(user_id="196", item_ids=["1"], plugin="no-such-model"), timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    after = scrape(daemon)

    def grew(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("curec_model_request_success_total", model="bpr", method="score") == 3
    assert grew("curec_model_executions_total", model="bpr", method="score") == 3
    assert grew("curec_model_inferences_total", model="bpr", method="score") == 3
    assert grew("curec_model_compute_duration_seconds_count", model="bpr", method="score") == 3
    assert grew("curec_model_request_success_total", model="popularity", method="recommend") == 1
    assert grew("curec_model_executions_total", model="reward", method="reward") == 1
    assert grew("curec_model_inferences_total", model="reward", method="reward") == 4
    assert 'model="no-such-model"' not in after
    assert sample(after, "curec_plugin_generation", model="bpr") >= 1
    assert sample(after, "curec_rpc_request_failure_total", method="Score", code="NOT_FOUND") >= 1
