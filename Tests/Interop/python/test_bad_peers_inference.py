"""Hostile calls to the Open Inference Protocol service (inference.GRPCInferenceService):
wrong datatypes, shapes that disagree with their contents, raw contents of the wrong size,
huge declared shapes, unknown and duplicate tensors, huge names, paths as plugin files. Each
is refused with INVALID_ARGUMENT (or NOT_FOUND for what does not exist) and a short message
that names the tensor and never echoes the input; the daemon keeps serving.

The interop daemon loads no plugins; the module loads the popularity recommender and the
collaborative reward model untrained through RepositoryModelLoad (tensors are checked before
any scoring)."""

import struct

import grpc
import pytest

from generated.inference import grpc_service_pb2 as pb
from generated.inference import grpc_service_pb2_grpc
from interop_support import CALL_TIMEOUT, new_channel, use_reference

pytestmark = pytest.mark.skipif(use_reference(), reason="the inference protocol is served by curecd only")

RECOMMENDER = "oip-pop"
REWARD = "oip-reward"
Input = pb.ModelInferRequest.InferInputTensor
Output = pb.ModelInferRequest.InferRequestedOutputTensor


@pytest.fixture(scope="module")
def stub(server_address):
    channel = new_channel(server_address)
    service = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
    for name, library in [(RECOMMENDER, "CURecPopularity"), (REWARD, "CURecCollaborativeReward")]:
        service.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=name, parameters={
            "library": pb.ModelRepositoryParameter(string_param=library)}), timeout=CALL_TIMEOUT)
    yield service
    for name in [RECOMMENDER, REWARD]:
        service.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=name), timeout=CALL_TIMEOUT)
    channel.close()


def failure(call):
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details() or ""


def still_serving(stub):
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=CALL_TIMEOUT).live
    assert stub.ModelReady(pb.ModelReadyRequest(name=RECOMMENDER), timeout=CALL_TIMEOUT) is not None


def typed_bytes(name, values, shape=None):
    return Input(name=name, datatype="BYTES", shape=[len(values)] if shape is None else shape,
                 contents=pb.InferTensorContents(bytes_contents=values))


def raw_bytes(values):
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


USER = typed_bytes("USER_ID", [b"196"])

RECOMMENDER_CASES = [
    # wrong datatype
    ("datatype", [USER, Input(name="ITEM_IDS", datatype="FP32", shape=[2],
                              contents=pb.InferTensorContents(fp32_contents=[1, 2]))], [], "ITEM_IDS"),
    ("unknown datatype", [USER, Input(name="K", datatype="Q" * 10_000, shape=[1])], [], "K"),
    # shape and contents disagree
    ("shape > contents", [USER, typed_bytes("ITEM_IDS", [b"1", b"2"], shape=[3])], [], "ITEM_IDS"),
    ("shape < contents", [USER, typed_bytes("ITEM_IDS", [b"1", b"2", b"3"], shape=[1])], [], "ITEM_IDS"),
    ("rank", [USER, typed_bytes("ITEM_IDS", [b"1", b"2"], shape=[1, 2])], [], "ITEM_IDS"),
    ("fixed dim", [typed_bytes("USER_ID", [b"196", b"186"]), typed_bytes("ITEM_IDS", [b"1"])], [], "USER_ID"),
    ("negative dim", [USER, typed_bytes("ITEM_IDS", [], shape=[-5])], [], "ITEM_IDS"),
    # huge declared shapes, no contents behind them
    ("huge dim", [USER, typed_bytes("ITEM_IDS", [b"1"], shape=[1 << 62])], [], "ITEM_IDS"),
    ("huge K shape", [USER, Input(name="K", datatype="INT64", shape=[1 << 40],
                                  contents=pb.InferTensorContents(int64_contents=[5]))], [], "K"),
    # unknown and duplicate tensors
    ("unknown input", [USER, typed_bytes("X" * 100_000, [b"1"])], [], "unknown input"),
    ("duplicate", [USER, USER, typed_bytes("ITEM_IDS", [b"1"])], [], "USER_ID"),
    ("unknown output", [USER, typed_bytes("ITEM_IDS", [b"1"])], [Output(name="Y" * 50_000)], "unknown output"),
    ("duplicate output", [USER, typed_bytes("ITEM_IDS", [b"1"])], [Output(name="SCORES"), Output(name="SCORES")], "SCORES"),
    ("both ITEM_IDS and K", [USER, typed_bytes("ITEM_IDS", [b"1"]), Input(
        name="K", datatype="INT64", shape=[1], contents=pb.InferTensorContents(int64_contents=[5]))], [], "K"),
    ("K out of range", [USER, Input(name="K", datatype="INT64", shape=[1],
                                    contents=pb.InferTensorContents(int64_contents=[1 << 40]))], [], "K"),
    ("not UTF-8", [typed_bytes("USER_ID", [b"\xff\xfe"]), typed_bytes("ITEM_IDS", [b"1"])], [], "USER_ID"),
]


@pytest.mark.parametrize("case, inputs, outputs, words", RECOMMENDER_CASES, ids=[c[0] for c in RECOMMENDER_CASES])
def test_bad_typed_tensors(stub, case, inputs, outputs, words):
    request = pb.ModelInferRequest(model_name=RECOMMENDER, inputs=inputs, outputs=outputs)
    code, message = failure(lambda: stub.ModelInfer(request, timeout=CALL_TIMEOUT))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, message
    assert words in message and len(message) < 300, message
    still_serving(stub)


RAW_CASES = [
    ("int64 of 7 bytes", [Input(name="USER_ID", datatype="BYTES", shape=[1]), Input(name="K", datatype="INT64", shape=[1])],
     [raw_bytes([b"196"]), b"\x01" * 7], "K"),
    ("int32 too long", [Input(name="USER_ID", datatype="BYTES", shape=[1]), Input(name="K", datatype="INT32", shape=[1])],
     [raw_bytes([b"196"]), b"\x01" * 1_000_000], "K"),
    ("length past the end", [Input(name="USER_ID", datatype="BYTES", shape=[1]), Input(name="ITEM_IDS", datatype="BYTES", shape=[1])],
     [raw_bytes([b"196"]), struct.pack("<I", 0xFFFFFFF0) + b"12"], "ITEM_IDS"),
    ("cut prefix", [Input(name="USER_ID", datatype="BYTES", shape=[1]), Input(name="ITEM_IDS", datatype="BYTES", shape=[2])],
     [raw_bytes([b"196"]), raw_bytes([b"1"]) + b"\x01\x00"], "ITEM_IDS"),
    ("more elements than the shape", [Input(name="USER_ID", datatype="BYTES", shape=[1]), Input(name="ITEM_IDS", datatype="BYTES", shape=[1])],
     [raw_bytes([b"196"]), raw_bytes([b"1"] * 100_000)], "ITEM_IDS"),
    ("fewer elements than the shape", [Input(name="USER_ID", datatype="BYTES", shape=[1]), Input(name="ITEM_IDS", datatype="BYTES", shape=[5])],
     [raw_bytes([b"196"]), raw_bytes([b"1"])], "ITEM_IDS"),
    ("raw for fewer inputs", [Input(name="USER_ID", datatype="BYTES", shape=[1]), Input(name="ITEM_IDS", datatype="BYTES", shape=[1])],
     [raw_bytes([b"196"])], "raw_input_contents"),
    ("raw and typed", [USER, Input(name="ITEM_IDS", datatype="BYTES", shape=[1])],
     [raw_bytes([b"196"]), raw_bytes([b"1"])], "USER_ID"),
]


@pytest.mark.parametrize("case, inputs, raw, words", RAW_CASES, ids=[c[0] for c in RAW_CASES])
def test_bad_raw_tensors(stub, case, inputs, raw, words):
    request = pb.ModelInferRequest(model_name=RECOMMENDER, inputs=inputs, raw_input_contents=raw)
    code, message = failure(lambda: stub.ModelInfer(request, timeout=CALL_TIMEOUT))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, message
    assert words in message and len(message) < 300, message
    still_serving(stub)


def test_reward_tensors_with_huge_or_mismatched_shapes(stub):
    rows = [typed_bytes("USER_ID", [b"196"]), typed_bytes("ITEM_ID", [b"242"])]
    for shape in [[1 << 20, 1 << 20], [1, -1], [1], [1, 2, 3]]:
        request = pb.ModelInferRequest(model_name=REWARD, inputs=rows + [Input(
            name="REASON_EMBEDDING", datatype="FP32", shape=shape, contents=pb.InferTensorContents(fp32_contents=[0.5]))])
        code, message = failure(lambda: stub.ModelInfer(request, timeout=CALL_TIMEOUT))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "REASON_EMBEDDING" in message, (shape, message)
    still_serving(stub)


def test_unknown_models_and_versions_are_not_found_without_echo(stub):
    for name, version in [("m" * 100_000, ""), ("../../etc/passwd", ""), (RECOMMENDER, "v" * 100_000)]:
        code, message = failure(lambda: stub.ModelInfer(pb.ModelInferRequest(
            model_name=name, model_version=version, inputs=[USER]), timeout=CALL_TIMEOUT))
        assert code == grpc.StatusCode.NOT_FOUND and len(message) < 300, message
        code, message = failure(lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name=name, version=version), timeout=CALL_TIMEOUT))
        assert code == grpc.StatusCode.NOT_FOUND and len(message) < 300, message
    code, _ = failure(lambda: stub.ModelInfer(pb.ModelInferRequest(inputs=[USER]), timeout=CALL_TIMEOUT))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    still_serving(stub)


@pytest.mark.parametrize("name, parameters, code", [
    ("oip-x", {"library": pb.ModelRepositoryParameter(string_param="/etc/passwd")}, grpc.StatusCode.INVALID_ARGUMENT),
    ("oip-x", {"library": pb.ModelRepositoryParameter(string_param="../../lib/libc.so.6")}, grpc.StatusCode.INVALID_ARGUMENT),
    ("oip-x", {"library": pb.ModelRepositoryParameter(string_param="L" * 100_000)}, grpc.StatusCode.INVALID_ARGUMENT),
    ("oip-x", {"library": pb.ModelRepositoryParameter(bytes_param=b"CURecBPR")}, grpc.StatusCode.INVALID_ARGUMENT),
    ("oip-x", {"file:1/model.so": pb.ModelRepositoryParameter(bytes_param=b"\x7fELF")}, grpc.StatusCode.INVALID_ARGUMENT),
    ("../oip-x", {"library": pb.ModelRepositoryParameter(string_param="CURecPopularity")}, grpc.StatusCode.INVALID_ARGUMENT),
    ("n" * 100_000, {"library": pb.ModelRepositoryParameter(string_param="CURecPopularity")}, grpc.StatusCode.INVALID_ARGUMENT),
    ("oip-x", {"library": pb.ModelRepositoryParameter(string_param="CURecNoSuchPlugin")}, grpc.StatusCode.NOT_FOUND),
])
def test_repository_load_names_plugin_files_only(stub, name, parameters, code):
    status, message = failure(lambda: stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(
        model_name=name, parameters=parameters), timeout=CALL_TIMEOUT))
    assert status == code and len(message) < 300, message
    assert not stub.ModelReady(pb.ModelReadyRequest(name="oip-x"), timeout=CALL_TIMEOUT).ready
    still_serving(stub)


def test_repository_unload_of_unknown_or_hostile_names(stub):
    for name, code in [("no-such-model", grpc.StatusCode.NOT_FOUND), ("u" * 100_000, grpc.StatusCode.INVALID_ARGUMENT),
                       ("", grpc.StatusCode.INVALID_ARGUMENT)]:
        status, message = failure(lambda: stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=name),
                                                                     timeout=CALL_TIMEOUT))
        assert status == code and len(message) < 300, message
    status, _ = failure(lambda: stub.RepositoryIndex(pb.RepositoryIndexRequest(repository_name="r" * 10_000), timeout=CALL_TIMEOUT))
    assert status == grpc.StatusCode.NOT_FOUND
    still_serving(stub)
