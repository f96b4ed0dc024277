"""DatasetService: chat datasets uploaded as JSON Lines, checked line by line, stored as
immutable versions; every bad upload is refused with the line and the problem, and leaves
nothing behind."""

import json

import grpc
import pytest

from curec_client._proto.curec.v1 import dataset_pb2, dataset_pb2_grpc


def example(user="Why watch Heat (1995)?", assistant="A tense crime drama with two great leads.", system=None):
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return json.dumps({"messages": messages})


def upload_requests(name, data, chunk=7, header=True):
    if header:
        yield dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(name=name))
    for start in range(0, len(data), chunk):
        yield dataset_pb2.UploadDatasetRequest(chunk=data[start:start + chunk])


@pytest.fixture(scope="module")
def datasets(channel):
    return dataset_pb2_grpc.DatasetServiceStub(channel)


def versions(datasets, name):
    try:
        return [d.version for d in datasets.List(dataset_pb2.ListDatasetsRequest(name=name), timeout=10).datasets]
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND
        return []


def test_upload_in_small_chunks_becomes_a_version(datasets):
    lines = [example(), "", example(system="You recommend films.", user="And Se7en?", assistant="Dark, but 😀 brilliant.")]
    data = ("\n".join(lines) + "\n").encode()
    stored = datasets.Upload(upload_requests("films", data, chunk=5), timeout=30)
    assert (stored.name, stored.examples, stored.bytes) == ("films", 2, len(data))
    assert stored.version.startswith("v") and stored.created_unix_ms > 0
    # A second upload is a new version; the last line may lack its newline.
    again = datasets.Upload(upload_requests("films", example().encode(), chunk=1 << 20), timeout=30)
    assert int(again.version[1:]) == int(stored.version[1:]) + 1 and again.examples == 1
    listed = datasets.List(dataset_pb2.ListDatasetsRequest(name="films"), timeout=10).datasets
    assert [d.version for d in listed][-2:] == [stored.version, again.version]
    assert "films" in {d.name for d in datasets.List(dataset_pb2.ListDatasetsRequest(), timeout=10).datasets}


BAD_LINES = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}]}), "2 to 64 turns"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]}),
     "last turn must be the assistant"),
    (json.dumps({"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]}),
     '"role" must be'),
    (json.dumps({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]}),
     "non-empty string"),
    (json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"},
                              {"role": "assistant", "content": "c"}]}), "system turn may only come first"),
    (json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                 "label": 1}), 'unknown key "label"'),
    (json.dumps({"messages": [{"role": "system", "content": "a"}, {"role": "assistant", "content": "b"}]}),
     "at least one user turn"),
]


@pytest.mark.parametrize("line, words", BAD_LINES)
def test_bad_line_is_named_and_nothing_is_stored(datasets, line, words):
    data = (example() + "\n" + example() + "\n" + line + "\n" + example() + "\n").encode()
    with pytest.raises(grpc.RpcError) as failure:
        datasets.Upload(upload_requests("bad-lines", data), timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "line 3:" in failure.value.details() and words in failure.value.details(), failure.value.details()
    assert len(failure.value.details()) < 300
    assert versions(datasets, "bad-lines") == []


def test_invalid_utf8_and_empty_files(datasets):
    for data, words in [(b'{"messages": "\xff"}\n', "UTF-8"), (b"\n\n", "no examples"), (b"", "no examples")]:
        with pytest.raises(grpc.RpcError) as failure:
            datasets.Upload(upload_requests("bad-bytes", data), timeout=30)
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in failure.value.details()
    assert versions(datasets, "bad-bytes") == []


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "-x", "x" * 65, "naïve"])
def test_bad_names(datasets, name):
    with pytest.raises(grpc.RpcError) as failure:
        datasets.Upload(upload_requests(name, example().encode()), timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "dataset name" in failure.value.details()


def test_messages_out_of_order(datasets):
    with pytest.raises(grpc.RpcError) as failure:
        datasets.Upload(upload_requests("order", example().encode(), header=False), timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "header" in failure.value.details()
    with pytest.raises(grpc.RpcError) as failure:
        datasets.Upload(iter([]), timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    def two_headers():
        yield dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(name="order"))
        yield dataset_pb2.UploadDatasetRequest(chunk=example().encode())
        yield dataset_pb2.UploadDatasetRequest(header=dataset_pb2.UploadDatasetHeader(name="other"))
    with pytest.raises(grpc.RpcError) as failure:
        datasets.Upload(two_headers(), timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "only the first" in failure.value.details()
    assert versions(datasets, "order") == [] and versions(datasets, "other") == []


def test_a_line_longer_than_the_limit(datasets):
    long_line = b'{"messages": [{"role": "user", "content": "' + b"a" * (1 << 20) + b'"}'
    with pytest.raises(grpc.RpcError) as failure:
        datasets.Upload(upload_requests("long-line", long_line, chunk=256 * 1024), timeout=60)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "line 1: the line is longer than" in failure.value.details()
    assert versions(datasets, "long-line") == []


def test_unknown_dataset_in_list(datasets):
    with pytest.raises(grpc.RpcError) as failure:
        datasets.List(dataset_pb2.ListDatasetsRequest(name="never-uploaded"), timeout=10)
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


def test_size_limit_refuses_and_keeps_serving(tmp_path):
    from conftest import RunningDaemon

    config = tmp_path / "curecd.yaml"
    config.write_text("dataset_upload_max_bytes: 2000\n")
    small = RunningDaemon("--no-plugins", "--config", str(config))
    try:
        channel = grpc.insecure_channel(small.address)
        stub = dataset_pb2_grpc.DatasetServiceStub(channel)
        data = ((example() + "\n") * 40).encode()
        assert len(data) > 2000
        with pytest.raises(grpc.RpcError) as failure:
            stub.Upload(upload_requests("big", data, chunk=512), timeout=30)
        assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "2000 bytes" in failure.value.details()
        assert versions(stub, "big") == []
        fits = ((example() + "\n") * 5).encode()
        assert stub.Upload(upload_requests("big", fits), timeout=30).examples == 5
        channel.close()
    finally:
        assert small.stop() == 0, small.log_tail()
