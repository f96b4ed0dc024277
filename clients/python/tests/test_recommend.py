"""Recommend, Score and Reward through the typed client."""

from __future__ import annotations

import math

import grpc
import pytest

from curec_client import Client, CurecError, RecommendedItem, Recommendations, RewardTriple


def test_recommend_returns_k_distinct_items_best_first(client: Client) -> None:
    answer = client.recommend("196", k=10)
    assert isinstance(answer, Recommendations)
    assert len(answer) == 10
    assert all(isinstance(item, RecommendedItem) for item in answer)
    assert len(set(answer.item_ids)) == 10
    scores = [item.score for item in answer]
    assert scores == sorted(scores, reverse=True)
    assert all(item.title for item in answer)
    assert answer.served_by.startswith("bpr@")


def test_exclude_seen_leaves_out_training_items(client: Client) -> None:
    seen_allowed = client.recommend("196", k=200, exclude_seen=False)
    unseen = client.recommend("196", k=200, exclude_seen=True)
    # Without exclusion the user's own (highly scored) training items come back.
    assert set(seen_allowed.item_ids) != set(unseen.item_ids)


def test_recommend_with_another_plugin(client: Client) -> None:
    answer = client.recommend("196", k=5, plugin="popularity")
    assert len(answer) == 5
    assert answer.served_by.startswith("popularity@")


def test_score_agrees_with_recommend(client: Client) -> None:
    top = client.recommend("1", k=5)
    scores = client.score("1", top.item_ids)
    assert len(scores) == 5
    assert scores.item_ids == tuple(top.item_ids)
    for item, score in zip(top, scores):
        assert math.isclose(item.score, score, rel_tol=1e-5, abs_tol=1e-5)
    assert [item_id for item_id, _ in scores.ranked()] == top.item_ids
    assert scores.as_dict()[top.item_ids[0]] == scores.scores[0]


def test_score_accepts_any_iterable(client: Client) -> None:
    scores = client.score("196", (str(i) for i in range(1, 21)))
    assert len(scores) == 20 and all(math.isfinite(s) for s in scores)


@pytest.mark.parametrize(
    "call, code, words",
    [
        (lambda c: c.recommend("no-such-user"), grpc.StatusCode.NOT_FOUND, "no-such-user"),
        (lambda c: c.score("196", ["242", "no-such-item"]), grpc.StatusCode.NOT_FOUND, "no-such-item"),
        (lambda c: c.recommend("196", k=0), grpc.StatusCode.INVALID_ARGUMENT, "k"),
        (lambda c: c.recommend("196", plugin="no-such-plugin"), grpc.StatusCode.NOT_FOUND, "no-such-plugin"),
    ],
    ids=["unknown-user", "unknown-item", "bad-k", "unknown-plugin"],
)
def test_errors_carry_status_and_message(client: Client, call, code, words) -> None:
    with pytest.raises(CurecError) as failure:
        call(client)
    assert failure.value.code == code
    assert words in failure.value.message
    assert failure.value.method.startswith("/curec.v1.RecommendService/")
    assert code.name in str(failure.value)


def test_reward_scores_each_triple(client: Client) -> None:
    reward = client.plugins().get("reward")
    assert reward is not None and reward.reason_embedding_dim > 0
    dim = reward.reason_embedding_dim
    answer = client.reward([
        RewardTriple("196", "242", [0.1] * dim),
        ("196", "302", [0.0] * dim),
        ("1", "1", [-0.1] * dim),
    ])
    assert len(answer) == 3
    assert all(math.isfinite(r) for r in answer)
    assert answer.served_by.startswith("reward@")


def test_reward_with_a_wrong_embedding_length_is_invalid(client: Client) -> None:
    dim = client.plugins().get("reward").reason_embedding_dim
    with pytest.raises(CurecError) as failure:
        client.reward([("196", "242", [0.0] * (dim + 1))])
    assert failure.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_unreachable_daemon_is_unavailable() -> None:
    # Port 1 on loopback: nothing listens there.
    with Client("127.0.0.1:1", timeout=5) as unreachable:
        with pytest.raises(CurecError) as failure:
            unreachable.recommend("196")
    assert failure.value.code == grpc.StatusCode.UNAVAILABLE


def test_context_manager_closes_the_channel(address: str) -> None:
    with Client(address, timeout=10) as short_lived:
        assert len(short_lived.recommend("196", k=1)) == 1
    with pytest.raises(Exception):
        short_lived.recommend("196", k=1)
