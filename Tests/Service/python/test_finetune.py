"""The finetune job end to end: a chat dataset uploaded by a client, LoRA fine-tuning of the
pretrained SmolLM2 on it, the adapter published in peft's layout and served by Generate
under its own name, with parameter refusals."""

import json
import os

import grpc
import pytest

from curec_client._proto.curec.v1 import (
    dataset_pb2,
    dataset_pb2_grpc,
    generation_pb2,
    generation_pb2_grpc,
    job_pb2,
    job_pb2_grpc,
)

ANSWER = "Banana split, always banana split."
QUESTIONS = ["What should I watch tonight?", "Which film fits a rainy day?", "Pick a movie for me.",
             "What is a good comedy?", "Any film for a long flight?", "Which classic should I see?"]


def upload(channel, name, examples):
    data = "".join(json.dumps({"messages": m}) + "\n" for m in examples).encode()
    stub = dataset_pb2_grpc.DatasetServiceStub(channel)

    def requests():
        yield dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(name=name))
        yield dataset_pb2.UploadDatasetRequest(chunk=data)
    return stub.Upload(requests(), timeout=30)


def generate(channel, model, question):
    stub = generation_pb2_grpc.GenerationServiceStub(channel)
    request = generation_pb2.GenerateRequest(
        chat=generation_pb2.ChatConversation(messages=[generation_pb2.ChatMessage(
            role=generation_pb2.CHAT_ROLE_USER, content=question)]),
        sampling=generation_pb2.SamplingOptions(temperature=0, max_tokens=12), model=model)
    return list(stub.Generate(request, timeout=600))[-1]


@pytest.fixture(scope="module")
def finetuned(channel, daemon):
    examples = [[{"role": "user", "content": q}, {"role": "assistant", "content": ANSWER}] for q in QUESTIONS]
    stored = upload(channel, "banana", examples)
    assert stored.examples == len(QUESTIONS)
    jobs = job_pb2_grpc.JobServiceStub(channel)
    job = jobs.Submit(job_pb2.SubmitJobRequest(kind="finetune", parameters={
        "dataset": "banana", "output": "banana-bot", "rank": "4", "alpha": "8", "dropout": "0",
        "steps": "16", "batch": "3", "learning_rate": "0.01", "max_length": "96", "checkpoint_every": "8"}),
        timeout=10)
    events = list(jobs.Watch(job_pb2.WatchJobRequest(id=job.id), timeout=1800))
    assert events[-1].state == job_pb2.JOB_STATE_SUCCEEDED, events[-1]
    record = jobs.Get(job_pb2.GetJobRequest(id=job.id), timeout=10)
    return record, events


def test_job_publishes_a_peft_adapter(finetuned, daemon):
    record, events = finetuned
    assert record.artifact == "models/banana-bot/v1"
    losses = [e.metrics["loss"] for e in events if e.stage == "finetune" and "loss" in e.metrics]
    assert len(losses) == 16 and losses[-1] < losses[0] / 2, losses
    directory = os.path.join(daemon.data_dir, "models", "banana-bot", "v1")
    config = json.load(open(os.path.join(directory, "adapter_config.json")))
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert os.path.getsize(os.path.join(directory, "adapter_model.safetensors")) > 0
    metadata = json.load(open(os.path.join(directory, "metadata.json")))
    assert metadata["kind"] == "chat-model" and metadata["dataset"] == "banana@v1" and metadata["method"] == "lora"


def test_generate_serves_the_fine_tuned_model_by_name(finetuned, channel):
    tuned = generate(channel, "banana-bot", "Recommend me something to watch.")
    assert tuned.model_version == "models/banana-bot/v1"
    assert "anana" in tuned.full_text, tuned.full_text
    base = generate(channel, "", "Recommend me something to watch.")
    assert base.model_version == "smollm2" and "anana" not in base.full_text


@pytest.mark.parametrize("parameters, words", [
    ({"output": "x"}, "'dataset'"),
    ({"dataset": "banana"}, "'output'"),
    ({"dataset": "never-uploaded", "output": "x"}, "no dataset never-uploaded"),
    ({"dataset": "banana@v9", "output": "x"}, "no dataset banana@v9"),
    ({"dataset": "banana", "output": "smollm2"}, "'output'"),
    ({"dataset": "banana", "output": "../x"}, "'output'"),
    ({"dataset": "banana", "output": "x", "method": "qlora"}, "lora or full"),
    ({"dataset": "banana", "output": "x", "rank": "0"}, "'rank'"),
    ({"dataset": "banana", "output": "x", "targets": "q,attention"}, "'targets'"),
    ({"dataset": "banana", "output": "x", "learning_rate": "nan"}, "'learning_rate'"),
    ({"dataset": "banana", "output": "x", "epochs": "3"}, "unknown parameter 'epochs'"),
])
def test_bad_parameters_are_refused_before_queueing(finetuned, channel, parameters, words):
    jobs = job_pb2_grpc.JobServiceStub(channel)
    with pytest.raises(grpc.RpcError) as failure:
        jobs.Submit(job_pb2.SubmitJobRequest(kind="finetune", parameters=parameters), timeout=10)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in failure.value.details(), failure.value.details()
    assert len(failure.value.details()) < 400


def test_generate_refuses_models_that_are_not_chat_models(finetuned, channel):
    stub = generation_pb2_grpc.GenerationServiceStub(channel)
    for model, version, code in [("bpr", "", grpc.StatusCode.NOT_FOUND), ("banana-bot", "v7", grpc.StatusCode.NOT_FOUND),
                                 ("no-such-model", "", grpc.StatusCode.NOT_FOUND), ("a/b", "", grpc.StatusCode.INVALID_ARGUMENT)]:
        with pytest.raises(grpc.RpcError) as failure:
            list(stub.Generate(generation_pb2.GenerateRequest(prompt="Hi", model=model, version=version), timeout=60))
        assert failure.value.code() == code, (model, failure.value.details())
