"""GenerationService.Generate through the typed client, with the pretrained base model
"smollm2": streamed pieces, the final result, sampling options, stop strings and errors.

These tests need the daemon's Generate; a daemon that answers UNIMPLEMENTED fails them."""

from __future__ import annotations

import grpc
import pytest

from curec_client import ChatMessage, ChatRole, Client, CurecError, FinishReason, Generation, GenerationStream

GENERATE_TIMEOUT = 300  # seconds for a short generation on a busy 2-core machine
CHAT = [("system", "You are a helpful assistant who recommends films."),
        ("user", "Name one good science fiction film and say why in one sentence.")]


def test_chat_streams_pieces_that_join_to_the_text(client: Client) -> None:
    stream = client.generate_stream(CHAT, max_tokens=24, seed=1, timeout=GENERATE_TIMEOUT)
    assert isinstance(stream, GenerationStream) and stream.result is None
    pieces = list(stream)
    result = stream.result
    assert isinstance(result, Generation)
    assert pieces and all(isinstance(piece, str) and piece for piece in pieces)
    assert "".join(pieces) == result.text == stream.text == str(result)
    assert result.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
    assert result.prompt_tokens > 0 and 0 < result.completion_tokens <= 24
    assert "smollm2" in result.model_version
    assert stream.finish() is result


def test_generate_returns_the_whole_result(client: Client) -> None:
    messages = [{"role": "user", "content": "Say hello."}, ChatMessage(ChatRole.ASSISTANT, "Hello!"),
                (ChatRole.USER, "Now say goodbye.")]
    result = client.generate(messages, model="smollm2", max_tokens=16, temperature=0.7, top_k=20, top_p=0.9,
                             repetition_penalty=1.1, seed=2, timeout=GENERATE_TIMEOUT)
    assert result.text and result.completion_tokens > 0
    assert result.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)


def test_max_tokens_is_respected(client: Client) -> None:
    # A raw prompt that invites a long continuation.
    result = client.generate(prompt="Once upon a time, in a small village by the sea,", max_tokens=5,
                             seed=3, timeout=GENERATE_TIMEOUT)
    assert result.completion_tokens <= 5 and result.prompt_tokens > 0
    if result.finish_reason is FinishReason.LENGTH:
        assert result.completion_tokens == 5
    else:
        assert result.finish_reason is FinishReason.STOP


def test_the_same_seed_gives_the_same_text(client: Client) -> None:
    first = client.generate(CHAT, max_tokens=20, temperature=1.0, seed=42, timeout=GENERATE_TIMEOUT)
    second = client.generate(CHAT, max_tokens=20, temperature=1.0, seed=42, timeout=GENERATE_TIMEOUT)
    assert first == second


def test_a_stop_string_ends_the_text_before_it(client: Client) -> None:
    stream = client.generate_stream(CHAT, max_tokens=32, temperature=0, timeout=GENERATE_TIMEOUT)
    pieces = list(stream)
    whole = stream.finish().text
    # A stop string that ends on a piece boundary and occurs nowhere earlier in the text.
    for start in range(2, len(pieces) - 1):
        stop = pieces[start] + pieces[start + 1]
        prefix = "".join(pieces[:start])
        if stop.strip() and whole.find(stop) == len(prefix):
            break
    else:
        pytest.fail("no usable stop string in %r" % pieces)
    stopped = client.generate(CHAT, max_tokens=32, temperature=0, stop=[stop, "never-appears-here"],
                              timeout=GENERATE_TIMEOUT)
    assert stopped.finish_reason is FinishReason.STOP
    assert stopped.text == prefix and stop not in stopped.text


def test_breaking_off_a_stream_cancels_it(client: Client) -> None:
    with client.generate_stream(CHAT, max_tokens=64, seed=4, timeout=GENERATE_TIMEOUT) as stream:
        first = next(iter(stream))
        assert first
    assert stream.result is None
    with pytest.raises(CurecError) as failure:
        stream.finish()
    assert failure.value.code == grpc.StatusCode.CANCELLED
    # The daemon keeps serving.
    assert client.generate(prompt="Hello", max_tokens=2, timeout=GENERATE_TIMEOUT).completion_tokens <= 2


@pytest.mark.parametrize(
    "arguments, code",
    [
        (dict(messages=CHAT, model="no-such-model"), grpc.StatusCode.NOT_FOUND),
        (dict(messages=CHAT, version="v999"), grpc.StatusCode.NOT_FOUND),
        (dict(messages=[]), grpc.StatusCode.INVALID_ARGUMENT),
        (dict(prompt=""), grpc.StatusCode.INVALID_ARGUMENT),
        (dict(messages=CHAT, max_tokens=100000), grpc.StatusCode.INVALID_ARGUMENT),
        (dict(messages=CHAT, temperature=-1.0), grpc.StatusCode.INVALID_ARGUMENT),
        (dict(messages=CHAT, stop=["a", "b", "c", "d", "e"]), grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=["unknown-model", "unknown-version", "empty-conversation", "empty-prompt", "max-tokens", "temperature",
         "five-stops"],
)
def test_bad_requests(client: Client, arguments: dict, code: grpc.StatusCode) -> None:
    with pytest.raises(CurecError) as failure:
        client.generate(timeout=GENERATE_TIMEOUT, **arguments)
    assert failure.value.code == code, failure.value
    assert failure.value.message and failure.value.method == "/curec.v1.GenerationService/Generate"


def test_local_argument_mistakes() -> None:
    # Raised before any call, so no daemon is needed.
    client = Client("127.0.0.1:9")
    with pytest.raises(TypeError, match="either messages"):
        client.generate()
    with pytest.raises(TypeError, match="either messages"):
        client.generate(CHAT, prompt="both")
    with pytest.raises(TypeError, match="prompt="):
        client.generate("a bare string")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chat role"):
        client.generate([("robot", "beep")])
    with pytest.raises(TypeError, match="role"):
        client.generate([{"content": "no role"}])
    client.close()
    assert ChatRole.parse("CHAT_ROLE_SYSTEM") is ChatRole.SYSTEM and ChatRole.parse(2) is ChatRole.USER
    assert ChatMessage.parse(("assistant", "x")).to_json() == {"role": "assistant", "content": "x"}
