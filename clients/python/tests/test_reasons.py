"""ScoreReasons and Embed (RewardService) and pair reasons through the typed client."""

from __future__ import annotations

import math

import grpc
import pytest

from curec_client import Client, CurecError, Embeddings, ReasonReward


def test_embed_returns_unit_vectors_in_order(client: Client) -> None:
    texts = ["A warm comedy about a wedding.", "A cold space thriller.", "A warm comedy about a wedding."]
    out = client.embed(texts)
    assert isinstance(out, Embeddings)
    assert out.dimension == 384 and out.model == "all-MiniLM-L6-v2" and len(out) == 3
    for vector in out:
        assert len(vector) == 384
        assert abs(math.sqrt(sum(x * x for x in vector)) - 1) < 1e-3
    assert out.vectors[0] == out.vectors[2]
    assert out.vectors[0] != out.vectors[1]


@pytest.mark.parametrize(
    "texts, words",
    [([], "texts is empty"), (["ok", "  "], "texts[1] is empty"), (["x"] * 257, "at most 256"),
     (["y" * 5000], "at most 4096 bytes")],
)
def test_embed_refuses_bad_batches(client: Client, texts, words) -> None:
    with pytest.raises(CurecError) as failure:
        client.embed(texts)
    assert failure.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert words in failure.value.message


def test_score_reasons_returns_the_reward_and_its_parts(client: Client) -> None:
    rewards = client.score_reasons([
        ("196", "242", "A gentle comedy for viewers who like quiet dramas."),
        ("196", "242", 'You loved "No Such Film At All" (1931).'),
        ("196", "242", ""),
    ])
    assert len(rewards) == 3 and all(isinstance(r, ReasonReward) for r in rewards)
    for reward in rewards[:2]:
        assert 0 <= reward.collaborative <= 1
        assert reward.collaborative == pytest.approx((reward.user_agreement + reward.audience_agreement) / 2)
        assert reward.reward == pytest.approx(reward.collaborative - reward.penalty)
    assert not rewards[1].checks_passed
    assert any(f.check == "title-exists" and f.penalty > 0 for f in rewards[1].failures)
    assert rewards[1].penalty == pytest.approx(min(2.0, sum(f.penalty for f in rewards[1].failures)))
    assert rewards[2].reward == -1 and [f.check for f in rewards[2].failures] == ["not-empty"]


def test_score_reasons_refuses_unknown_users_and_items(client: Client) -> None:
    with pytest.raises(CurecError) as failure:
        client.score_reasons([("196", "no-such-item", "text")])
    assert failure.value.code == grpc.StatusCode.NOT_FOUND
    assert "reasons[0].item_id" in failure.value.message


def test_recommend_accepts_the_pair_source_name(client: Client) -> None:
    with pytest.raises(ValueError):
        client.recommend("196", k=1, with_reasons=True, reason_source="pairs")


def test_recommend_with_pair_reasons(client: Client) -> None:
    answer = client.recommend("1", k=2, with_reasons=True, reason_source="pair", timeout=1800)
    assert len(answer) == 2 and answer.reason_model_version == "smollm2"
    assert all(item.reason_source == ("pair" if item.reason else "") for item in answer)
    again = client.recommend("1", k=2, with_reasons=True, reason_source="pair", timeout=1800)
    assert [item.reason for item in again] == [item.reason for item in answer]
