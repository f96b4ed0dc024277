"""PluginService: listing, ABI refusals, and hot reload under load."""

import os
import subprocess
import tempfile
import threading

import grpc
import pytest

from curec_client._proto.curec.v1 import plugin_pb2, plugin_pb2_grpc, recommend_pb2, recommend_pb2_grpc
from conftest import HERE, REPO_ROOT

HEADER_DIR = os.path.join(REPO_ROOT, "Sources", "CURecPluginABI", "include")


@pytest.fixture(scope="module")
def plugins(channel):
    return plugin_pb2_grpc.PluginServiceStub(channel)


@pytest.fixture(scope="module")
def bad_libraries(daemon):
    """Builds the misbehaving plugins with the system C compiler, as a plugin author would,
    into the daemon's plugin directory `<data_dir>/plugins`; returns their file names."""
    out = os.path.join(daemon.data_dir, "plugins")
    os.makedirs(out, exist_ok=True)
    built = {}
    for name in ("wrong_major", "missing_symbol", "create_fails"):
        path = os.path.join(out, "lib%s.so" % name)
        subprocess.run(["cc", "-shared", "-fPIC", "-I", HEADER_DIR, "-o", path,
                        os.path.join(HERE, "bad_plugins", name + ".c")], check=True)
        built[name] = os.path.basename(path)
    text = os.path.join(out, "libnot_a_library.so")
    with open(text, "w") as handle:
        handle.write("this is a text file, not an ELF shared object\n")
    built["not_a_library"] = os.path.basename(text)
    return built


def assert_still_serving(channel):
    stub = recommend_pb2_grpc.RecommendServiceStub(channel)
    response = stub.Score(recommend_pb2.ScoreRequest(user_id="1", item_ids=["1", "2"]), timeout=10)
    assert len(response.scores) == 2


def test_list_shows_the_default_plugins(plugins):
    response = plugins.List(plugin_pb2.ListPluginsRequest(), timeout=10)
    by_name = {p.name: p for p in response.plugins}
    assert set(by_name) >= {"bpr", "popularity", "reward"}
    assert by_name["bpr"].kind == plugin_pb2.PLUGIN_KIND_RECOMMENDER and by_name["bpr"].trained
    assert by_name["popularity"].plugin_name == "popularity"
    assert by_name["reward"].kind == plugin_pb2.PLUGIN_KIND_REWARD_MODEL
    assert "libCURecBPR.so" in response.available_libraries
    assert all("/" not in name for name in response.available_libraries)


@pytest.mark.parametrize(
    "library, code, words",
    [
        ("wrong_major", grpc.StatusCode.FAILED_PRECONDITION, "plugin ABI 99.0 but this daemon provides 1.2"),
        ("missing_symbol", grpc.StatusCode.FAILED_PRECONDITION, "does not export curec_plugin_describe"),
        ("create_fails", grpc.StatusCode.INVALID_ARGUMENT, "the license key in the config is missing"),
        ("not_a_library", grpc.StatusCode.FAILED_PRECONDITION, "not a loadable shared library"),
    ],
)
def test_abi_refusals_are_clear_and_harmless(channel, plugins, bad_libraries, library, code, words):
    with pytest.raises(grpc.RpcError) as failure:
        plugins.Load(plugin_pb2.LoadPluginRequest(name="bad-" + library, library=bad_libraries[library]), timeout=30)
    assert failure.value.code() == code
    assert words in failure.value.details()
    assert_still_serving(channel)
    names = [p.name for p in plugins.List(plugin_pb2.ListPluginsRequest(), timeout=10).plugins]
    assert "bad-" + library not in names


def test_unknown_and_duplicate_names(plugins):
    with pytest.raises(grpc.RpcError) as failure:
        plugins.Load(plugin_pb2.LoadPluginRequest(name="x", library="libNoSuchPlugin.so"), timeout=10)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'libNoSuchPlugin.so' not found in the plugin directories" in failure.value.details()
    with pytest.raises(grpc.RpcError) as failure:
        plugins.Load(plugin_pb2.LoadPluginRequest(name="bpr", library="CURecBPR"), timeout=10)
    assert failure.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as failure:
        plugins.Reload(plugin_pb2.ReloadPluginRequest(name="nobody"), timeout=10)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


def test_load_untrained_then_score_is_failed_precondition(channel, plugins):
    plugins.Load(plugin_pb2.LoadPluginRequest(name="bpr-untrained", library="CURecBPR", config=b'{"factors": 8}'), timeout=30)
    stub = recommend_pb2_grpc.RecommendServiceStub(channel)
    with pytest.raises(grpc.RpcError) as failure:
        stub.Score(recommend_pb2.ScoreRequest(user_id="1", item_ids=["1"], plugin="bpr-untrained"), timeout=10)
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not trained" in failure.value.details()
    plugins.Unload(plugin_pb2.UnloadPluginRequest(name="bpr-untrained"), timeout=10)


def popularity_config(half_life_days, label):
    """A serialized curec.plugins.popularity.PopularityConfig, built by hand (fields 1, 3)."""
    import struct
    encoded = b"\x09" + struct.pack("<d", half_life_days)
    label_bytes = label.encode()
    encoded += b"\x1a" + bytes([len(label_bytes)]) + label_bytes
    return encoded


def test_reload_under_load_loses_no_call_and_switches(channel, plugins):
    stub = recommend_pb2_grpc.RecommendServiceStub(channel)
    request = recommend_pb2.ScoreRequest(user_id="5", item_ids=["1", "50", "100", "181", "258"], plugin="popularity")
    before = stub.Score(request, timeout=10)
    stop = threading.Event()
    failures = []
    per_thread = [[] for _ in range(4)]
    answered = threading.Condition()

    def hammer(answers):
        while not stop.is_set():
            try:
                response = stub.Score(request, timeout=10)
                with answered:
                    answers.append((response.served_by, tuple(response.scores)))
                    answered.notify_all()
            except grpc.RpcError as error:  # any failed call fails the test
                with answered:
                    failures.append("%s: %s" % (error.code(), error.details()))
                    answered.notify_all()

    def wait_until(condition):
        with answered:
            assert answered.wait_for(lambda: failures or condition(), timeout=120), "the clients stopped answering"

    threads = [threading.Thread(target=hammer, args=(answers,)) for answers in per_thread]
    for thread in threads:
        thread.start()
    # Every client is calling the old instance before the reload...
    wait_until(lambda: all(answers for answers in per_thread))
    status = plugins.Reload(plugin_pb2.ReloadPluginRequest(
        name="popularity", config=popularity_config(30.0, "2.0.0-decay")), timeout=60)
    # ...and each has been answered by the new one after it.
    wait_until(lambda: all(answers[-1][0].startswith("popularity@2.0.0-decay#") for answers in per_thread))
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == []
    assert status.plugin_version == "2.0.0-decay" and status.generation >= 2
    for answers in per_thread:
        served = [served_by for served_by, _ in answers]
        assert served[0] == before.served_by
        assert served[-1].startswith("popularity@2.0.0-decay#")
        # Within one client thread, once a call was answered by the new instance every later
        # call is too (calls already in flight may still finish on the old one).
        switch = next(i for i, s in enumerate(served) if s.startswith("popularity@2.0.0-decay"))
        assert all(s.startswith("popularity@2.0.0-decay") for s in served[switch:])
        assert answers[-1][1] != tuple(before.scores)


def test_sasrec_entry_points_refuse_bad_config_and_untrained_scoring(channel, plugins):
    with pytest.raises(grpc.RpcError) as failure:
        plugins.Load(plugin_pb2.LoadPluginRequest(name="sasrec-bad", library="CURecSASRec",
                                                  config=b'{"loss": "hinge"}'), timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert 'loss must be "bce" or "softmax"' in failure.value.details()
    plugins.Load(plugin_pb2.LoadPluginRequest(name="sasrec-untrained", library="CURecSASRec"), timeout=30)
    stub = recommend_pb2_grpc.RecommendServiceStub(channel)
    with pytest.raises(grpc.RpcError) as failure:
        stub.Score(recommend_pb2.ScoreRequest(user_id="1", item_ids=["1"], plugin="sasrec-untrained"), timeout=10)
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "sasrec is not trained" in failure.value.details()
    plugins.Unload(plugin_pb2.UnloadPluginRequest(name="sasrec-untrained"), timeout=10)
    assert_still_serving(channel)
