#!/usr/bin/env python3
"""Reference implementation of the curecd interop contract, built on grpcio.

The interop suites run against it when INTEROP_REFERENCE=1, which shows that the
suites themselves are right independently of the daemon under test. It accepts the
same command line as curecd:

    reference_server.py --listen 127.0.0.1:0 --enable-interop-testing --port-file FILE

It serves grpc.testing.TestService, grpc.health.v1.Health and server reflection
(v1alpha and v1), writes the bound port to FILE atomically once listening, and
stops gracefully (exit status 0) on SIGTERM or SIGINT.
"""

import argparse
import os
import signal
import sys
import threading
import time
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import grpc  # noqa: E402
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc  # noqa: E402

from generated.grpc_testing import empty_pb2, messages_pb2, test_pb2_grpc  # noqa: E402
# Registers grpc/testing/test.proto in the default descriptor pool, for reflection.
from generated.grpc_testing import test_pb2  # noqa: E402,F401

TEST_SERVICE = "grpc.testing.TestService"
ECHO_INITIAL_KEY = "x-grpc-test-echo-initial"
ECHO_TRAILING_KEY = "x-grpc-test-echo-trailing-bin"
REFLECTION_V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


def _payload(size):
    if size < 0:
        raise ValueError("negative size")
    return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=b"\0" * size)


def _echo_metadata(context):
    """Copies the echo headers of the request into the response metadata."""
    initial = []
    trailing = []
    for key, value in context.invocation_metadata():
        if key == ECHO_INITIAL_KEY:
            initial.append((key, value))
        elif key == ECHO_TRAILING_KEY:
            trailing.append((key, value))
    if initial:
        context.send_initial_metadata(tuple(initial))
    if trailing:
        context.set_trailing_metadata(tuple(trailing))


def _finish_with_status(context, echo_status):
    """Ends the call with the status the client asked for, if it asked for one."""
    if echo_status is not None and echo_status.code != 0:
        context.abort(_status_code(echo_status.code), echo_status.message)


def _status_code(value):
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


def _sleep_while_active(context, seconds):
    deadline = time.monotonic() + seconds
    while context.is_active():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        time.sleep(min(remaining, 0.01))
    return False


class TestService(test_pb2_grpc.TestServiceServicer):
    def EmptyCall(self, request, context):
        _echo_metadata(context)
        return empty_pb2.Empty()

    def UnaryCall(self, request, context):
        _echo_metadata(context)
        if request.HasField("response_status"):
            _finish_with_status(context, request.response_status)
        return messages_pb2.SimpleResponse(payload=_payload(request.response_size))

    def CacheableUnaryCall(self, request, context):
        return self.UnaryCall(request, context)

    def StreamingOutputCall(self, request, context):
        _echo_metadata(context)
        for params in request.response_parameters:
            if params.interval_us > 0 and not _sleep_while_active(context, params.interval_us / 1e6):
                return
            yield messages_pb2.StreamingOutputCallResponse(payload=_payload(params.size))
        if request.HasField("response_status"):
            _finish_with_status(context, request.response_status)

    def StreamingInputCall(self, request_iterator, context):
        _echo_metadata(context)
        total = 0
        for request in request_iterator:
            total += len(request.payload.body)
        return messages_pb2.StreamingInputCallResponse(aggregated_payload_size=total)

    def FullDuplexCall(self, request_iterator, context):
        _echo_metadata(context)
        for request in request_iterator:
            if request.HasField("response_status"):
                _finish_with_status(context, request.response_status)
            for params in request.response_parameters:
                if params.interval_us > 0 and not _sleep_while_active(context, params.interval_us / 1e6):
                    return
                yield messages_pb2.StreamingOutputCallResponse(payload=_payload(params.size))

    def HalfDuplexCall(self, request_iterator, context):
        _echo_metadata(context)
        requests = list(request_iterator)
        for request in requests:
            if request.HasField("response_status"):
                _finish_with_status(context, request.response_status)
            for params in request.response_parameters:
                if params.interval_us > 0 and not _sleep_while_active(context, params.interval_us / 1e6):
                    return
                yield messages_pb2.StreamingOutputCallResponse(payload=_payload(params.size))

    # UnimplementedCall is deliberately left to the generated base class, which
    # answers UNIMPLEMENTED.


class ReflectionServicer(reflection.ReflectionServicer):
    """grpcio's reflection servicer, also resolving method names (package.Service.Method)."""

    def _file_containing_symbol(self, request, fully_qualified_name):
        response = super()._file_containing_symbol(request, fully_qualified_name)
        if response.WhichOneof("message_response") == "error_response" and "." in fully_qualified_name:
            service_name, method_name = fully_qualified_name.rsplit(".", 1)
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                return response
            if method_name in service.methods_by_name:
                return super()._file_containing_symbol(request, service_name)
        return response


def _add_reflection_v1(server, servicer):
    """Serves grpc.reflection.v1 with the v1alpha implementation.

    The v1 and v1alpha ServerReflectionRequest/Response messages are identical on the
    wire (same fields and numbers), so the v1alpha message classes can decode and
    encode v1 traffic.
    """
    handler = grpc.method_handlers_generic_handler(
        "grpc.reflection.v1.ServerReflection",
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))


def build_server(interop):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    names = [health.SERVICE_NAME, reflection.SERVICE_NAME, "grpc.reflection.v1.ServerReflection"]
    if interop:
        test_pb2_grpc.add_TestServiceServicer_to_server(TestService(), server)
        names.append(TEST_SERVICE)
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    if interop:
        health_servicer.set(TEST_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection_servicer = ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflection_servicer, server)
    _add_reflection_v1(server, reflection_servicer)
    return server, health_servicer


def _write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--enable-interop-testing", action="store_true")
    parser.add_argument("--port-file")
    args = parser.parse_args(argv)

    server, health_servicer = build_server(args.enable_interop_testing)
    port = server.add_insecure_port(args.listen)
    if port == 0:
        print("cannot listen on %s" % args.listen, file=sys.stderr)
        return 1
    server.start()
    if args.port_file:
        _write_port_file(args.port_file, port)
    print("listening on port %d" % port, file=sys.stderr, flush=True)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(0.2):
        pass
    health_servicer.enter_graceful_shutdown()
    server.stop(grace=5).wait()
    # A repeated SIGTERM during interpreter shutdown must not turn exit 0 into a kill.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
