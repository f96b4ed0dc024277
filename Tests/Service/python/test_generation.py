"""Stages 1-2 and GenerationService: a small pretrain job on MovieLens-100K, then reasons
streamed token by token, with deadlines and validation."""

import grpc
import pytest

from curec_client._proto.curec.v1 import (generation_pb2, generation_pb2_grpc, job_pb2, job_pb2_grpc,
                                          recommend_pb2, recommend_pb2_grpc)


@pytest.fixture(scope="module")
def generation(channel):
    jobs = job_pb2_grpc.JobServiceStub(channel)
    stub = generation_pb2_grpc.GenerationServiceStub(channel)
    with pytest.raises(grpc.RpcError) as failure:
        list(stub.GenerateReason(generation_pb2.GenerateReasonRequest(user_id="196", item_id="242", model="tiny-lm"),
                                 timeout=10))
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no language model 'tiny-lm'" in failure.value.details()
    job = jobs.Submit(job_pb2.SubmitJobRequest(kind="pretrain", parameters={
        "name": "tiny-lm", "steps": "60", "layers": "2", "heads": "2", "width": "64", "context": "256",
        "vocabulary": "600", "batch": "4"}), timeout=10)
    events = list(jobs.Watch(job_pb2.WatchJobRequest(id=job.id), timeout=900))
    assert events[-1].state == job_pb2.JOB_STATE_SUCCEEDED, events[-1]
    record = jobs.Get(job_pb2.GetJobRequest(id=job.id), timeout=10)
    assert record.artifact == "models/tiny-lm/v1"
    assert record.metrics["examples"] > 1000
    assert 1 < record.metrics["held_out_perplexity"] < 600
    losses = [e.metrics["loss"] for e in events if e.stage == "pretrain" and "loss" in e.metrics]
    assert losses[-1] < losses[0], "pretraining loss did not fall"
    return stub


def test_reason_streams_token_by_token(generation):
    responses = list(generation.GenerateReason(generation_pb2.GenerateReasonRequest(
        user_id="196", item_id="242", model="tiny-lm",
        sampling=generation_pb2.SamplingOptions(max_tokens=40, seed=7)), timeout=120))
    tokens, final = responses[:-1], responses[-1]
    assert final.final and final.model_version == "models/tiny-lm/v1"
    # The checked reason keeps whole sentences of the raw one.
    for sentence in [x for x in final.reason.split(". ") if x]:
        assert sentence.rstrip(".") in final.raw_reason
    assert 1 <= len(tokens) <= 40
    assert "".join(r.text for r in tokens) == final.full_text
    # Same seed, same reason.
    again = list(generation.GenerateReason(generation_pb2.GenerateReasonRequest(
        user_id="196", item_id="242", model="tiny-lm",
        sampling=generation_pb2.SamplingOptions(max_tokens=40, seed=7)), timeout=120))
    assert again[-1].full_text == final.full_text


def test_deadline_stops_generation(generation):
    """A deadline shorter than the reason takes to write ends the call with DEADLINE_EXCEEDED.
    SmolLM2 (loaded first, so the deadline falls in the writing) needs far longer than 50 ms
    for its prompt and 200 tokens; the tiny test LM could finish a short reason inside it."""
    request = generation_pb2.GenerateReasonRequest(
        user_id="196", item_id="242", model="smollm2",
        sampling=generation_pb2.SamplingOptions(max_tokens=1))
    assert list(generation.GenerateReason(request, timeout=900))[-1].final
    request.sampling.max_tokens = 200
    request.sampling.temperature = 1.0
    request.sampling.seed = 3
    with pytest.raises(grpc.RpcError) as failure:
        list(generation.GenerateReason(request, timeout=0.05))
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize(
    "fields, code, words",
    [
        ({"user_id": "999999", "item_id": "1"}, grpc.StatusCode.NOT_FOUND, "999999"),
        ({"user_id": "196", "item_id": "nope"}, grpc.StatusCode.NOT_FOUND, "item_id 'nope'"),
        ({"user_id": "196", "item_id": "1", "sampling": generation_pb2.SamplingOptions(max_tokens=9999)},
         grpc.StatusCode.INVALID_ARGUMENT, "max_tokens"),
        ({"user_id": "196", "item_id": "1", "sampling": generation_pb2.SamplingOptions(top_p=1.5)},
         grpc.StatusCode.INVALID_ARGUMENT, "top_p"),
    ],
)
def test_generation_validation(generation, fields, code, words):
    with pytest.raises(grpc.RpcError) as failure:
        list(generation.GenerateReason(generation_pb2.GenerateReasonRequest(model="tiny-lm", **fields), timeout=30))
    assert failure.value.code() == code
    assert words in failure.value.details()


def test_recommend_returns_items_with_reasons(channel, generation):
    from curec_client._proto.curec.v1 import recommend_pb2, recommend_pb2_grpc
    stub = recommend_pb2_grpc.RecommendServiceStub(channel)
    plain = stub.Recommend(recommend_pb2.RecommendRequest(user_id="196", k=3), timeout=30)
    assert all(item.reason == "" for item in plain.items)
    response = stub.Recommend(recommend_pb2.RecommendRequest(user_id="196", k=3, with_reasons=True,
                                                             reason_model="tiny-lm"), timeout=300)
    assert [i.item_id for i in response.items] == [i.item_id for i in plain.items]
    # Reasons are checked: a sentence survives only if its claims hold, so a reason is a
    # (possibly empty) selection of whole sentences, never invented text.
    assert all(isinstance(item.reason, str) for item in response.items)
    with pytest.raises(grpc.RpcError) as failure:
        stub.Recommend(recommend_pb2.RecommendRequest(user_id="196", k=3, with_reasons=True, reason_model="absent"),
                       timeout=30)
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_python_client_gets_reasons_and_streams_one(daemon, generation):
    from curec_client import Client
    with Client(daemon.address) as client:
        items = client.recommend("196", k=2, with_reasons=True, reason_model="tiny-lm", timeout=300)
        assert len(items) == 2
        pieces = list(client.generate_reason("196", items.items[0].item_id, model="tiny-lm", max_tokens=30, seed=3,
                                             timeout=120))
        assert pieces and "".join(pieces)


# --------------------------------------------------------------------------- the pretrained chat model

def _reason_block(text):
    """The text after the "### Reason" marker line, up to the next marker (as the daemon reads it)."""
    start = text.find("### Reason\n")
    if start < 0:
        return ""
    tail = text[start + len("### Reason\n"):]
    for marker in ["### End", "###", "<|endoftext|>", "<|im_end|>"]:
        tail = tail.split(marker)[0]
    return tail.strip()


def test_reason_from_the_pretrained_chat_model_streams_and_is_checked(channel):
    """GenerateReason with model="smollm2": the corpus pair prompt in SmolLM2's chat format (as
    the pipeline prompts it); the streamed pieces join to the text, the raw reason is the
    answer's reason block, the reason its checked part."""
    stub = generation_pb2_grpc.GenerationServiceStub(channel)
    responses = list(stub.GenerateReason(generation_pb2.GenerateReasonRequest(
        user_id="196", item_id="242", model="smollm2",
        sampling=generation_pb2.SamplingOptions(max_tokens=48, temperature=0)), timeout=600))
    pieces, final = responses[:-1], responses[-1]
    assert final.final and final.model_version == "smollm2"
    assert 1 <= len(pieces) <= 48
    assert "".join(r.text for r in pieces) == final.full_text
    assert len(final.full_text.split()) >= 5
    assert final.raw_reason == _reason_block(final.full_text)
    for sentence in [x for x in final.reason.split(". ") if x]:
        assert sentence.rstrip(".") in final.raw_reason


def test_recommend_with_reasons_generated_by_the_chat_model(channel):
    stub = recommend_pb2_grpc.RecommendServiceStub(channel)
    response = stub.Recommend(recommend_pb2.RecommendRequest(
        user_id="1", k=2, with_reasons=True, reason_source=recommend_pb2.REASON_SOURCE_GENERATE,
        reason_model="smollm2"), timeout=900)
    assert len(response.items) == 2
    generated = [item for item in response.items if item.reason]
    assert generated, "every generated reason failed the verifier"
    for item in generated:
        assert item.reason_source == "generated" and len(item.reason.split()) >= 5


def test_a_corrupt_model_file_is_unavailable_not_a_crash(tmp_path):
    """A truncated GGUF file at lm_path: Generate answers UNAVAILABLE naming the problem, and
    the daemon keeps serving (the next call gets the same answer, health stays up)."""
    from conftest import RunningDaemon, lm_path

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(open(lm_path(), "rb").read(100_000))
    daemon = RunningDaemon("--no-plugins", "--lm-path", str(broken))
    try:
        channel = grpc.insecure_channel(daemon.address)
        stub = generation_pb2_grpc.GenerationServiceStub(channel)
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as failure:
                list(stub.Generate(generation_pb2.GenerateRequest(prompt="Hello"), timeout=60))
            assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "broken.gguf" in failure.value.details() and len(failure.value.details()) < 500
        channel.close()
    finally:
        assert daemon.stop() == 0, daemon.log_tail()
