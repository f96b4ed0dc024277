"""The Open Inference Protocol (KServe v2 / Triton gRPC) through tritonclient against the
daemon trained on MovieLens-100K: liveness, readiness, metadata, inference on BPR and SASRec
with raw and typed tensors (checked against curec.v1 Score and Recommend, which run the same
scoring path), reward models, the repository extension (index, load, reload, unload),
statistics (the same numbers as `/metrics`) and bad tensors refused with INVALID_ARGUMENT.

Needs tritonclient[grpc] (it pins protobuf < 7): scripts/inference-tests runs this file in
its own virtual environment (requirements-inference.txt)."""

import json
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from curec_client._proto.curec.v1 import (plugin_pb2, plugin_pb2_grpc, recommend_pb2, recommend_pb2_grpc,
                                         reward_pb2, reward_pb2_grpc)

USER = "196"
ITEMS = ["242", "302", "377", "51", "346", "474", "265", "465", "451", "86"]
SASREC = "sasrec-oip"
SASREC_CONFIG = {"epochs": 2, "width": 16, "max_length": 20, "blocks": 1, "heads": 1, "hidden": 16, "patience": 1}


@pytest.fixture(scope="module")
def client(daemon):
    connection = triton.InferenceServerClient(url=daemon.address)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def oip(channel):
    """The same service through tritonclient's generated stubs, for typed tensors and
    parameters its high-level client does not expose."""
    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


def score(channel, plugin, user=USER, items=ITEMS):
    stub = recommend_pb2_grpc.RecommendServiceStub(channel)
    return list(stub.Score(recommend_pb2.ScoreRequest(user_id=user, item_ids=items, plugin=plugin), timeout=30).scores)


def bytes_input(name, values):
    tensor = triton.InferInput(name, [len(values)], "BYTES")
    tensor.set_data_from_numpy(np.array([v.encode() for v in values], dtype=np.object_))
    return tensor


def typed_bytes(name, values):
    return service_pb2.ModelInferRequest.InferInputTensor(
        name=name, datatype="BYTES", shape=[len(values)],
        contents=service_pb2.InferTensorContents(bytes_contents=[v.encode() for v in values]))


def status_of(call):
    with pytest.raises(InferenceServerException) as failure:
        call()
    return failure.value.status(), failure.value.message()


def rpc_failure(call):
    with pytest.raises(grpc.RpcError) as failure:
        call()
    return failure.value.code(), failure.value.details()


def test_liveness_readiness_and_server_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata.name == "curecd"
    assert {"model_repository", "statistics"} <= set(metadata.extensions)


def test_model_metadata_states_the_tensors(client):
    bpr = client.get_model_metadata("bpr")
    assert bpr.name == "bpr" and bpr.platform == "curec_recommender" and bpr.versions == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in bpr.inputs] == [
        ("USER_ID", "BYTES", [1]), ("ITEM_IDS", "BYTES", [-1]), ("K", "INT64", [1])]
    assert [(t.name, t.datatype, list(t.shape)) for t in bpr.outputs] == [
        ("SCORES", "FP32", [-1]), ("ITEM_IDS", "BYTES", [-1])]
    reward = client.get_model_metadata("reward")
    assert reward.platform == "curec_reward_model"
    assert [t.name for t in reward.inputs] == ["USER_ID", "ITEM_ID", "REASON_EMBEDDING"]
    assert [(t.name, t.datatype) for t in reward.outputs] == [("REWARDS", "FP32")]
    assert client.is_model_ready("bpr") and client.is_model_ready("bpr", "1")
    assert not client.is_model_ready("bpr", "7")
    assert not client.is_model_ready("no-such-model")
    code, _ = status_of(lambda: client.get_model_metadata("no-such-model"))
    assert code == "StatusCode.NOT_FOUND"


def test_bpr_scores_with_raw_tensors_equal_score(client, channel):
    result = client.infer("bpr", [bytes_input("USER_ID", [USER]), bytes_input("ITEM_IDS", ITEMS)],
                          outputs=[triton.InferRequestedOutput("SCORES")], request_id="raw-1")
    response = result.get_response()
    assert response.model_name == "bpr" and response.model_version == "1" and response.id == "raw-1"
    assert len(response.raw_output_contents) == 1, "raw inputs are answered raw"
    scores = result.as_numpy("SCORES")
    assert scores.dtype == np.float32 and scores.shape == (len(ITEMS),)
    assert scores.tolist() == pytest.approx(score(channel, "bpr"), rel=0, abs=0)


def test_bpr_scores_with_typed_tensors_equal_score(oip, channel):
    request = service_pb2.ModelInferRequest(model_name="bpr", inputs=[typed_bytes("USER_ID", [USER]), typed_bytes("ITEM_IDS", ITEMS)])
    response = oip.ModelInfer(request, timeout=30)
    assert not response.raw_output_contents, "typed inputs are answered typed"
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [("SCORES", "FP32", [len(ITEMS)])]
    assert list(response.outputs[0].contents.fp32_contents) == score(channel, "bpr")
    # Typed inputs with binary_data asked for an output: that output comes raw.
    request.outputs.append(service_pb2.ModelInferRequest.InferRequestedOutputTensor(
        name="SCORES", parameters={"binary_data": service_pb2.InferParameter(bool_param=True)}))
    raw = oip.ModelInfer(request, timeout=30)
    assert np.frombuffer(raw.raw_output_contents[0], dtype="<f4").tolist() == score(channel, "bpr")


def test_top_k_equals_recommend(client, oip, channel):
    recommend = recommend_pb2_grpc.RecommendServiceStub(channel)
    expected = recommend.Recommend(recommend_pb2.RecommendRequest(user_id=USER, k=10, plugin="bpr", exclude_seen=True), timeout=30)
    k = triton.InferInput("K", [1], "INT64")
    k.set_data_from_numpy(np.array([10], dtype=np.int64))
    result = client.infer("bpr", [bytes_input("USER_ID", [USER]), k],
                          parameters={"exclude_seen": True})
    assert [v.decode() for v in result.as_numpy("ITEM_IDS")] == [item.item_id for item in expected.items]
    assert result.as_numpy("SCORES").tolist() == [item.score for item in expected.items]
    # Typed, with K as INT32 and only SCORES asked for.
    typed = oip.ModelInfer(service_pb2.ModelInferRequest(
        model_name="bpr", inputs=[typed_bytes("USER_ID", [USER]), service_pb2.ModelInferRequest.InferInputTensor(
            name="K", datatype="INT32", shape=[1], contents=service_pb2.InferTensorContents(int_contents=[10]))],
        outputs=[service_pb2.ModelInferRequest.InferRequestedOutputTensor(name="SCORES")],
        parameters={"exclude_seen": service_pb2.InferParameter(bool_param=True)}), timeout=30)
    assert [o.name for o in typed.outputs] == ["SCORES"]
    assert list(typed.outputs[0].contents.fp32_contents) == [item.score for item in expected.items]


def test_reward_model_rewards_equal_reward_score(client, channel):
    plugins = plugin_pb2_grpc.PluginServiceStub(channel).List(plugin_pb2.ListPluginsRequest(), timeout=10)
    dim = next(p.reason_embedding_dim for p in plugins.plugins if p.name == "reward")
    rows = [("196", "242"), ("186", "302"), ("22", "377")]
    rng = np.random.default_rng(7)
    embeddings = rng.standard_normal((len(rows), dim)).astype(np.float32)
    expected = reward_pb2_grpc.RewardServiceStub(channel).Score(reward_pb2.RewardRequest(plugin="reward", triples=[
        reward_pb2.RewardTriple(user_id=u, item_id=i, reason_embedding=embeddings[n].tolist())
        for n, (u, i) in enumerate(rows)]), timeout=30)
    embedding = triton.InferInput("REASON_EMBEDDING", [len(rows), dim], "FP32")
    embedding.set_data_from_numpy(embeddings)
    result = client.infer("reward", [bytes_input("USER_ID", [u for u, _ in rows]),
                                     bytes_input("ITEM_ID", [i for _, i in rows]), embedding])
    assert result.as_numpy("REWARDS").tolist() == list(expected.rewards)


def test_sasrec_loads_trains_serves_and_unloads(client, oip, channel):
    """RepositoryModelLoad of a SASRec plugin file (trained as a job the call waits for);
    inference with raw and typed tensors equals Score; unloading makes it NOT_FOUND."""
    oip.RepositoryModelLoad(service_pb2.RepositoryModelLoadRequest(model_name=SASREC, parameters={
        "library": service_pb2.ModelRepositoryParameter(string_param="CURecSASRec"),
        "config": service_pb2.ModelRepositoryParameter(string_param=json.dumps(SASREC_CONFIG)),
        "train": service_pb2.ModelRepositoryParameter(bool_param=True)}), timeout=1800)
    assert client.is_model_ready(SASREC)
    index = {m.name: m for m in client.get_model_repository_index().models}
    assert index[SASREC].state == "READY" and index[SASREC].version == "1"
    expected = score(channel, SASREC)
    raw = client.infer(SASREC, [bytes_input("USER_ID", [USER]), bytes_input("ITEM_IDS", ITEMS)])
    assert raw.as_numpy("SCORES").tolist() == expected
    typed = oip.ModelInfer(service_pb2.ModelInferRequest(
        model_name=SASREC, model_version="1", inputs=[typed_bytes("USER_ID", [USER]), typed_bytes("ITEM_IDS", ITEMS)]), timeout=30)
    assert list(typed.outputs[0].contents.fp32_contents) == expected
    client.unload_model(SASREC)
    assert not client.is_model_ready(SASREC)
    assert SASREC not in {m.name for m in client.get_model_repository_index().models}
    code, message = status_of(lambda: client.infer(SASREC, [bytes_input("USER_ID", [USER]), bytes_input("ITEM_IDS", ITEMS)]))
    assert code == "StatusCode.NOT_FOUND" and SASREC in message


def test_repository_reload_makes_a_new_version(client, oip):
    before = {m.name: m.version for m in client.get_model_repository_index().models}
    assert {"bpr", "popularity", "reward"} <= set(before)
    ready = oip.RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True), timeout=30)
    assert {(m.name, m.state) for m in ready.models} >= {("bpr", "READY"), ("popularity", "READY"), ("reward", "READY")}
    client.load_model("popularity")  # loaded: reloaded from its saved state
    version = str(int(before["popularity"]) + 1)
    assert client.is_model_ready("popularity", version)
    assert not client.is_model_ready("popularity", before["popularity"])
    assert client.get_model_metadata("popularity").versions == [version]
    result = client.infer("popularity", [bytes_input("USER_ID", [USER]), bytes_input("ITEM_IDS", ITEMS)], model_version=version)
    assert result.get_response().model_version == version
    code, _ = status_of(lambda: client.infer(
        "popularity", [bytes_input("USER_ID", [USER]), bytes_input("ITEM_IDS", ITEMS)], model_version=before["popularity"]))
    assert code == "StatusCode.NOT_FOUND"


def test_repository_load_refuses_paths_and_unknown_parameters(oip):
    def load(**parameters):
        return rpc_failure(lambda: oip.RepositoryModelLoad(service_pb2.RepositoryModelLoadRequest(
            model_name="oip-new", parameters={k: service_pb2.ModelRepositoryParameter(string_param=v) for k, v in parameters.items()}),
            timeout=30))
    assert load(library="/tmp/libCURecBPR.so")[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert load(library="../lib/libCURecBPR.so")[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert load(library="CURecNoSuchPlugin")[0] == grpc.StatusCode.NOT_FOUND
    code, message = load(library="CURecBPR", shell="rm -rf /")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "shell" in message
    code, message = load()
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "library" in message


def scrape(daemon):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % daemon.metrics_port, timeout=30) as response:
        return response.read().decode("utf-8")


def summed(text, name, model):
    total = 0.0
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head.startswith(name + "{") and 'model="%s"' % model in head:
            total += float(value)
    return total


def test_statistics_count_inferences_as_metrics_do(client, daemon):
    before = client.get_inference_statistics("bpr").model_stats[0]
    for _ in range(3):
        client.infer("bpr", [bytes_input("USER_ID", [USER]), bytes_input("ITEM_IDS", ITEMS)])
    status_of(lambda: client.infer("bpr", [bytes_input("USER_ID", ["no-such-user"]), bytes_input("ITEM_IDS", ITEMS)]))
    stats = client.get_inference_statistics("bpr", "1").model_stats[0]
    assert stats.name == "bpr" and stats.version == "1"
    assert stats.inference_count == before.inference_count + 3
    assert stats.execution_count == before.execution_count + 3
    assert stats.inference_stats.success.count == before.inference_stats.success.count + 3
    assert stats.inference_stats.success.ns > before.inference_stats.success.ns
    assert stats.inference_stats.compute_infer.count == stats.execution_count
    assert stats.inference_stats.fail.count >= before.inference_stats.fail.count
    assert stats.last_inference >= before.last_inference > 0
    text = scrape(daemon)
    assert summed(text, "curec_model_inferences_total", "bpr") == stats.inference_count
    assert summed(text, "curec_model_executions_total", "bpr") == stats.execution_count
    assert summed(text, "curec_model_request_success_total", "bpr") == stats.inference_stats.success.count
    every = {s.name for s in client.get_inference_statistics().model_stats}
    assert {"bpr", "popularity", "reward"} <= every
    code, _ = status_of(lambda: client.get_inference_statistics("no-such-model"))
    assert code == "StatusCode.NOT_FOUND"


@pytest.mark.parametrize("inputs, words", [
    (lambda: [bytes_input("USER_ID", [USER]), triton.InferInput("ITEM_IDS", [2], "FP32").set_data_from_numpy(
        np.array([1, 2], dtype=np.float32))], ["ITEM_IDS", "datatype"]),
    (lambda: [bytes_input("USER_ID", [USER, "186"]), bytes_input("ITEM_IDS", ITEMS)], ["USER_ID", "shape"]),
    (lambda: [bytes_input("USER_ID", [USER]), bytes_input("ITEMS", ITEMS)], ["ITEMS", "unknown input"]),
    (lambda: [bytes_input("USER_ID", [USER]), bytes_input("ITEM_IDS", ITEMS), bytes_input("ITEM_IDS", ITEMS)],
     ["ITEM_IDS", "more than once"]),
    (lambda: [bytes_input("USER_ID", [USER])], ["ITEM_IDS", "K"]),
])
def test_bad_tensors_are_invalid_argument_naming_the_tensor(client, inputs, words):
    code, message = status_of(lambda: client.infer("bpr", inputs()))
    assert code == "StatusCode.INVALID_ARGUMENT", message
    for word in words:
        assert word in message


def test_unknown_ids_and_models(client):
    code, message = status_of(lambda: client.infer("bpr", [bytes_input("USER_ID", ["no-such-user"]), bytes_input("ITEM_IDS", ITEMS)]))
    assert code == "StatusCode.NOT_FOUND" and "USER_ID" in message
    code, message = status_of(lambda: client.infer("bpr", [bytes_input("USER_ID", [USER]), bytes_input("ITEM_IDS", ["242", "nope"])]))
    assert code == "StatusCode.NOT_FOUND" and "ITEM_IDS" in message
    code, _ = status_of(lambda: client.infer("no-such-model", [bytes_input("USER_ID", [USER])]))
    assert code == "StatusCode.NOT_FOUND"
