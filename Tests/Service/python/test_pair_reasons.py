"""Recommend with REASON_SOURCE_PAIR: a reason for this user and this item from the chat model
(the untuned base "smollm2" here: no tuned reason model is published), checked by the
verifier, cached per (user, item, model version), one generation for concurrent requests."""

import threading

import grpc
import pytest

from curec_client._proto.curec.v1 import recommend_pb2, recommend_pb2_grpc
from test_cli import curec


def _pair_request(user, k, model=""):
    return recommend_pb2.RecommendRequest(user_id=user, k=k, with_reasons=True, reason_model=model,
                                          reason_source=recommend_pb2.REASON_SOURCE_PAIR)


def test_pair_reasons_are_written_checked_and_cached(channel):
    stub = recommend_pb2_grpc.RecommendServiceStub(channel)
    first = stub.Recommend(_pair_request("1", 2), timeout=1800)
    assert first.reason_model_version == "smollm2"
    assert len(first.items) == 2
    written = [item for item in first.items if item.reason]
    assert written, "no sentence of any attempt passed the verifier"
    for item in first.items:
        assert item.reason_source == ("pair" if item.reason else "")
        assert "###" not in item.reason and "<|" not in item.reason
    # Two concurrent requests for the same user's top 3: the first two pairs come from the
    # cache, the third is written once and both get the same text.
    answers = [None, None]

    def ask(slot):
        answers[slot] = stub.Recommend(_pair_request("1", 3), timeout=1800)

    threads = [threading.Thread(target=ask, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers[0] is not None and answers[1] is not None
    assert [i.reason for i in answers[0].items] == [i.reason for i in answers[1].items]
    assert [i.reason for i in answers[0].items[:2]] == [i.reason for i in first.items]
    assert [i.item_id for i in answers[0].items][:2] == [i.item_id for i in first.items]


def test_pair_reasons_need_a_chat_model(channel):
    stub = recommend_pb2_grpc.RecommendServiceStub(channel)
    for name in ["lm", "no-such-model", "../models"]:
        with pytest.raises(grpc.RpcError) as failure:
            stub.Recommend(_pair_request("1", 2, model=name), timeout=30)
        assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "not a chat model" in failure.value.details()


def test_cli_shows_pair_reasons_and_their_model(daemon):
    result = curec(daemon, "recommend", "1", "--k", "2", "--reason-source", "pair", "--timeout", "1800")
    assert result.returncode == 0, result.stderr
    assert "reasons by smollm2" in result.stdout
    assert "why [pair]:" in result.stdout or result.stdout.count("\n") == 3
