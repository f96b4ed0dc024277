"""grpc.health.v1.Health and server reflection (v1alpha and v1), checked with grpcio clients."""

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from interop_support import CALL_TIMEOUT, HEALTH_SERVICE, TEST_SERVICE

SERVING = health_pb2.HealthCheckResponse.SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


@pytest.fixture
def health_stub(channel):
    return health_pb2_grpc.HealthStub(channel)


# ------------------------------------------------------------------------- health


@pytest.mark.parametrize("service", ["", TEST_SERVICE])
def test_health_check_serving(health_stub, service):
    response = health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT)
    assert response.status == SERVING


def test_health_check_unknown_service(health_stub):
    with pytest.raises(grpc.RpcError) as excinfo:
        health_stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=CALL_TIMEOUT)
    assert excinfo.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("service", ["", TEST_SERVICE])
def test_health_watch_serving_then_cancel(health_stub, service):
    responses = health_stub.Watch(health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT)
    first = next(responses)
    assert first.status == SERVING
    responses.cancel()
    with pytest.raises(grpc.RpcError) as excinfo:
        next(responses)
    assert excinfo.value.code() == grpc.StatusCode.CANCELLED
    # The server keeps serving after the watcher went away.
    assert health_stub.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT).status == SERVING


def test_health_watch_unknown_service(health_stub):
    responses = health_stub.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=CALL_TIMEOUT)
    first = next(responses)
    assert first.status == SERVICE_UNKNOWN
    responses.cancel()


def test_health_watch_deadline(health_stub):
    """A watch with nothing new to report runs into its deadline."""
    responses = health_stub.Watch(health_pb2.HealthCheckRequest(), timeout=1.0)
    assert next(responses).status == SERVING
    with pytest.raises(grpc.RpcError) as excinfo:
        next(responses)
    assert excinfo.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert health_stub.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT).status == SERVING


# --------------------------------------------------------------------- reflection


def test_reflection_descriptor_database(channel):
    """grpcio-reflection's client (v1alpha) lists services and resolves files by symbol."""
    database = ProtoReflectionDescriptorDatabase(channel)
    services = database.get_services()
    assert HEALTH_SERVICE in services
    assert TEST_SERVICE in services

    file_proto = database.FindFileContainingSymbol(TEST_SERVICE)
    assert file_proto.name == "grpc/testing/test.proto"
    assert file_proto.package == "grpc.testing"
    assert "TestService" in [s.name for s in file_proto.service]

    # A pool backed by the database pulls in dependencies by file name.
    pool = DescriptorPool(database)
    service = pool.FindServiceByName(TEST_SERVICE)
    methods = {m.name: m for m in service.methods}
    for name in ("EmptyCall", "UnaryCall", "StreamingOutputCall", "StreamingInputCall", "FullDuplexCall", "HalfDuplexCall"):
        assert name in methods
    assert methods["UnaryCall"].input_type.full_name == "grpc.testing.SimpleRequest"
    assert methods["FullDuplexCall"].output_type.full_name == "grpc.testing.StreamingOutputCallResponse"
    health_service = pool.FindServiceByName(HEALTH_SERVICE)
    # grpcio-health-checking registers health.proto under grpc_health/v1/, others under grpc/health/v1/.
    assert health_service.file.name.endswith("health/v1/health.proto")
    assert health_service.file.package == "grpc.health.v1"


REFLECTION_METHODS = {
    "v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "v1": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
}


def reflect(channel, version, requests):
    """Runs one reflection stream. v1 messages are wire-identical to v1alpha ones."""
    call = channel.stream_stream(
        REFLECTION_METHODS[version],
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    return list(call(iter(requests), timeout=CALL_TIMEOUT))


def file_names(response):
    names = []
    for raw in response.file_descriptor_response.file_descriptor_proto:
        names.append(descriptor_pb2.FileDescriptorProto.FromString(raw).name)
    return names


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_reflection_list_services(channel, version):
    (response,) = reflect(channel, version, [reflection_pb2.ServerReflectionRequest(list_services="")])
    assert response.WhichOneof("message_response") == "list_services_response"
    names = [s.name for s in response.list_services_response.service]
    assert HEALTH_SERVICE in names
    assert TEST_SERVICE in names
    assert response.original_request.list_services == ""


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_reflection_file_by_filename_and_symbol(channel, version):
    requests = [
        reflection_pb2.ServerReflectionRequest(file_by_filename="grpc/testing/test.proto"),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=HEALTH_SERVICE),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.testing.SimpleRequest"),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.testing.TestService.UnaryCall"),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Symbol"),
        reflection_pb2.ServerReflectionRequest(file_by_filename="no/such/file.proto"),
    ]
    responses = reflect(channel, version, requests)
    assert len(responses) == len(requests)
    by_file, health, simple_request, method, unknown_symbol, unknown_file = responses

    assert file_names(by_file)[0] == "grpc/testing/test.proto"
    assert file_names(health)[0].endswith("health/v1/health.proto")
    assert file_names(simple_request)[0] == "grpc/testing/messages.proto"
    assert file_names(method)[0] == "grpc/testing/test.proto"
    for response, request in zip(responses, requests):
        assert response.original_request == request
    for response in (unknown_symbol, unknown_file):
        assert response.WhichOneof("message_response") == "error_response"
        assert response.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
