"""PluginService through the typed client: list, load, reload, unload."""

from __future__ import annotations

import grpc
import pytest

from curec_client import Client, CurecError, PluginKind, PluginStatus


def test_plugins_lists_the_default_instances(client: Client) -> None:
    listing = client.plugins()
    assert {"bpr", "popularity", "reward"} <= {p.name for p in listing}
    assert "bpr" in listing and "nobody" not in listing
    bpr = listing.get("bpr")
    assert isinstance(bpr, PluginStatus)
    assert bpr.kind is PluginKind.RECOMMENDER and bpr.trained and bpr.generation >= 1
    assert listing.get("reward").kind is PluginKind.REWARD_MODEL
    assert "libCURecBPR.so" in listing.available_libraries


def test_load_reload_unload_round_trip(client: Client) -> None:
    status = client.load_plugin("bpr-client-test", "CURecBPR", config={"factors": 8, "epochs": 2}, train=True)
    try:
        assert status.name == "bpr-client-test" and status.trained and status.job_id
        assert status.kind is PluginKind.RECOMMENDER
        answer = client.recommend("196", k=3, plugin="bpr-client-test")
        assert answer.served_by.startswith("bpr-client-test@") and answer.served_by.endswith("#%d" % status.generation)

        reloaded = client.reload_plugin("bpr-client-test", config='{"factors": 8, "epochs": 3}')
        assert reloaded.generation == status.generation + 1
        assert client.plugins().get("bpr-client-test").generation == reloaded.generation
    finally:
        client.unload_plugin("bpr-client-test")
    assert "bpr-client-test" not in client.plugins()
    with pytest.raises(CurecError) as failure:
        client.recommend("196", plugin="bpr-client-test")
    assert failure.value.code == grpc.StatusCode.NOT_FOUND


def test_load_untrained_then_scoring_is_failed_precondition(client: Client) -> None:
    client.load_plugin("bpr-client-untrained", "CURecBPR", config=b'{"factors": 4}', train=False)
    try:
        with pytest.raises(CurecError) as failure:
            client.score("1", ["1"], plugin="bpr-client-untrained")
        assert failure.value.code == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        client.unload_plugin("bpr-client-untrained")


def test_plugin_errors(client: Client) -> None:
    with pytest.raises(CurecError) as failure:
        client.load_plugin("bpr", "CURecBPR")
    assert failure.value.code == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(CurecError) as failure:
        client.load_plugin("x", "libNoSuchPlugin.so")
    assert failure.value.code == grpc.StatusCode.NOT_FOUND
    # Libraries load only from the daemon's plugin directories, by file name.
    with pytest.raises(CurecError) as failure:
        client.load_plugin("x", "/tmp/libCURecBPR.so")
    assert failure.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(CurecError) as failure:
        client.reload_plugin("nobody")
    assert failure.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(CurecError) as failure:
        client.unload_plugin("nobody")
    assert failure.value.code == grpc.StatusCode.NOT_FOUND


def test_config_must_be_bytes_text_or_mapping(client: Client) -> None:
    with pytest.raises(TypeError):
        client.load_plugin("x", "CURecBPR", config=42)  # type: ignore[arg-type]
