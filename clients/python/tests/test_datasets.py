"""DatasetService through the typed client: uploads from a path, bytes, a file object or
examples, in chunks; listing; the daemon's refusals as CurecError; local mistakes raised
before anything is stored."""

from __future__ import annotations

import io
import json
from typing import List

import grpc
import pytest

from curec_client import ChatMessage, ChatRole, Client, CurecError, Dataset


def line(user: str = "Why watch Heat (1995)?", assistant: str = "A tense crime drama with two great leads.") -> str:
    return json.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]})


def versions(client: Client, name: str) -> List[str]:
    try:
        return [d.version for d in client.datasets(name)]
    except CurecError as error:
        assert error.code == grpc.StatusCode.NOT_FOUND, error
        return []


def test_upload_a_file_in_chunks_and_list_it(client: Client, tmp_path) -> None:
    path = tmp_path / "films.jsonl"
    # About 40 KB in 4 KiB chunks: many upload messages, split inside lines.
    lines = [line(user="Why watch film %d?" % i, assistant="Because it is number %d. 😀" % i) for i in range(500)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stored = client.upload_dataset("py-films", path, chunk_size=4096)
    assert isinstance(stored, Dataset)
    assert (stored.name, stored.examples, stored.bytes) == ("py-films", 500, path.stat().st_size)
    assert stored.version.startswith("v") and stored.created_unix_ms > 0
    assert stored.ref == "py-films@" + stored.version

    again = client.upload_dataset("py-films", str(path))  # a str path, default chunks
    assert int(again.version[1:]) == int(stored.version[1:]) + 1
    listed = client.datasets("py-films")
    assert [d.version for d in listed][-2:] == [stored.version, again.version]
    assert listed[-2] == stored
    assert "py-films" in {d.name for d in client.datasets()}


def test_upload_bytes_and_a_file_object(client: Client) -> None:
    data = (line() + "\n\n" + line(user="And Se7en?") + "\n").encode()
    stored = client.upload_dataset("py-bytes", data)
    assert (stored.examples, stored.bytes) == (2, len(data))

    reads: List[int] = []

    class Recording(io.BytesIO):
        def read(self, size: int = -1) -> bytes:  # type: ignore[override]
            reads.append(size)
            return super().read(size)

    handle = Recording(data * 50)
    stored = client.upload_dataset("py-bytes", handle, chunk_size=1000)
    assert (stored.examples, stored.bytes) == (100, len(data) * 50)
    assert reads and all(size == 1000 for size in reads) and len(reads) > len(data) * 50 // 1000
    assert not handle.closed  # the caller's file object stays open


def test_upload_examples(client: Client) -> None:
    examples = [
        {"messages": [{"role": "system", "content": "You recommend films."},
                      {"role": "user", "content": "Something like Heat?"},
                      {"role": "assistant", "content": "Try Thief (1981)."}]},
        [("user", "Hi!"), ("assistant", "Hello, which films do you like?")],
        [ChatMessage(ChatRole.USER, "Naïve question: is Alien scary?"), {"role": "assistant", "content": "Very."}],
        {"messages": [("user", "Tuples inside a mapping"), (ChatRole.ASSISTANT, "work too")]},
    ]
    stored = client.upload_dataset("py-examples", (example for example in examples), chunk_size=64)
    assert stored.examples == 4


def test_a_bad_line_is_named_and_nothing_is_stored(client: Client) -> None:
    data = (line() + "\n" + json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n").encode()
    with pytest.raises(CurecError) as failure:
        client.upload_dataset("py-bad", data)
    assert failure.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "line 2:" in failure.value.message and failure.value.method == "/curec.v1.DatasetService/Upload"
    with pytest.raises(CurecError) as failure:
        client.upload_dataset("py-bad", [[("user", "Is the last turn the assistant's?"), ("user", "No.")]])
    assert failure.value.code == grpc.StatusCode.INVALID_ARGUMENT and "line 1:" in failure.value.message
    assert versions(client, "py-bad") == []


@pytest.mark.parametrize("name", ["", "../escape", "-x"])
def test_bad_names_are_invalid_argument(client: Client, name: str) -> None:
    with pytest.raises(CurecError) as failure:
        client.upload_dataset(name, line().encode())
    assert failure.value.code == grpc.StatusCode.INVALID_ARGUMENT and "dataset name" in failure.value.message


def test_unknown_dataset_is_not_found(client: Client) -> None:
    with pytest.raises(CurecError) as failure:
        client.datasets("py-never-uploaded")
    assert failure.value.code == grpc.StatusCode.NOT_FOUND


def test_local_mistakes_raise_before_anything_is_stored(client: Client, tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        client.upload_dataset("py-local", tmp_path / "missing.jsonl")
    with pytest.raises(ValueError):
        client.upload_dataset("py-local", line().encode(), chunk_size=(1 << 20) + 1)
    with pytest.raises(TypeError):
        client.upload_dataset("py-local", 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="binary mode"):
        client.upload_dataset("py-local", io.StringIO(line()))  # type: ignore[arg-type]

    def examples():
        yield [("user", "first"), ("assistant", "fine")]
        raise RuntimeError("the source broke")

    # The source's own exception reaches the caller, and the cut upload stores nothing.
    with pytest.raises(RuntimeError, match="the source broke"):
        client.upload_dataset("py-local", examples())
    with pytest.raises(ValueError, match="chat role"):
        client.upload_dataset("py-local", [[("robot", "beep"), ("assistant", "boop")]])
    assert versions(client, "py-local") == []
