import CURecRPCProtos
import Foundation

/// `grpc.testing.TestService`, the service the standard gRPC interop cases call.
///
/// Served only when the daemon runs with `--enable-interop-testing`. Echoes
/// `x-grpc-test-echo-initial` in the response headers and `x-grpc-test-echo-trailing-bin`
/// in the trailers, and ends a call with `response_status` when a request sets it.
/// `UnimplementedCall` answers UNIMPLEMENTED, as the interop cases expect.
public struct InteropTestService: Grpc_Testing_TestServiceHandler {
    /// Creates the service.
    public init() {}

    public func emptyCall(_ request: Grpc_Testing_Empty, context: ServerContext) throws -> Grpc_Testing_Empty {
        Self.echoMetadata(context)
        return Grpc_Testing_Empty()
    }

    public func unaryCall(_ request: Grpc_Testing_SimpleRequest, context: ServerContext) throws -> Grpc_Testing_SimpleResponse {
        Self.echoMetadata(context)
        if request.hasResponseStatus { try Self.check(request.responseStatus) }
        return try .with { $0.payload = try Self.payload(size: request.responseSize) }
    }

    public func cacheableUnaryCall(
        _ request: Grpc_Testing_SimpleRequest, context: ServerContext
    ) throws -> Grpc_Testing_SimpleResponse {
        Self.echoMetadata(context)
        return try .with { $0.payload = try Self.payload(size: request.responseSize) }
    }

    public func streamingOutputCall(
        _ request: Grpc_Testing_StreamingOutputCallRequest,
        responses: ResponseWriter<Grpc_Testing_StreamingOutputCallResponse>, context: ServerContext
    ) async throws {
        Self.echoMetadata(context)
        try await Self.respond(to: request, writer: responses)
    }

    public func streamingInputCall(
        _ requests: RequestStream<Grpc_Testing_StreamingInputCallRequest>, context: ServerContext
    ) async throws -> Grpc_Testing_StreamingInputCallResponse {
        Self.echoMetadata(context)
        var total: Int32 = 0
        for try await request in requests { total &+= Int32(request.payload.body.count) }
        return .with { $0.aggregatedPayloadSize = total }
    }

    public func fullDuplexCall(
        _ requests: RequestStream<Grpc_Testing_StreamingOutputCallRequest>,
        responses: ResponseWriter<Grpc_Testing_StreamingOutputCallResponse>, context: ServerContext
    ) async throws {
        Self.echoMetadata(context)
        for try await request in requests {
            try await Self.respond(to: request, writer: responses)
        }
    }

    public func halfDuplexCall(
        _ requests: RequestStream<Grpc_Testing_StreamingOutputCallRequest>,
        responses: ResponseWriter<Grpc_Testing_StreamingOutputCallResponse>, context: ServerContext
    ) async throws {
        Self.echoMetadata(context)
        var buffered: [Grpc_Testing_StreamingOutputCallRequest] = []
        for try await request in requests { buffered.append(request) }
        for request in buffered { try await Self.respond(to: request, writer: responses) }
    }

    /// The interop cases expect this method to be UNIMPLEMENTED.
    public func unimplementedCall(_ request: Grpc_Testing_Empty, context: ServerContext) throws -> Grpc_Testing_Empty {
        throw RPCError(.unimplemented, "UnimplementedCall is left unimplemented for the interop cases")
    }

    private static func respond(
        to request: Grpc_Testing_StreamingOutputCallRequest,
        writer: ResponseWriter<Grpc_Testing_StreamingOutputCallResponse>
    ) async throws {
        if request.hasResponseStatus { try check(request.responseStatus) }
        for parameters in request.responseParameters {
            if parameters.intervalUs > 0 {
                try await Task.sleep(for: .microseconds(Int(parameters.intervalUs)))
            }
            let payload = try payload(size: parameters.size)
            try await writer.send(.with { $0.payload = payload })
        }
    }

    private static func echoMetadata(_ context: ServerContext) {
        if let initial = context.requestMetadata.first("x-grpc-test-echo-initial") {
            var metadata = Metadata()
            metadata.add("x-grpc-test-echo-initial", initial)
            context.addInitialMetadata(metadata)
        }
        if let trailing = context.requestMetadata.firstBinary("x-grpc-test-echo-trailing-bin") {
            var metadata = Metadata()
            metadata.add("x-grpc-test-echo-trailing-bin", bytes: trailing)
            context.addTrailingMetadata(metadata)
        }
    }

    private static func check(_ status: Grpc_Testing_EchoStatus) throws(RPCError) {
        guard status.code != 0 else { return }
        let code = StatusCode(rawValue: Int(status.code)) ?? .unknown
        throw RPCError(code, status.message)
    }

    /// The largest payload a request may ask for: gRPC's default message limit. The interop
    /// cases ask for at most 314,159 bytes; without a bound one request could make the server
    /// allocate 2 GiB.
    static let maxPayloadBytes: Int32 = 4 * 1024 * 1024

    private static func payload(size: Int32) throws(RPCError) -> Grpc_Testing_Payload {
        guard size >= 0 else { throw RPCError(.invalidArgument, "response size \(size) is negative") }
        guard size <= maxPayloadBytes else {
            throw RPCError(.invalidArgument, "response size \(size) is over the \(maxPayloadBytes) bytes this service sends")
        }
        return .with {
            $0.type = .compressable
            $0.body = Data(count: Int(size))
        }
    }
}
