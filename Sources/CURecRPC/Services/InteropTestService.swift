import CURecRPCProtos
import Foundation

/// `grpc.testing.TestService`, the service the standard gRPC interop cases call.
///
/// Served only when the daemon runs with `--enable-interop-testing`. Echoes
/// `x-grpc-test-echo-initial` in the response headers and `x-grpc-test-echo-trailing-bin`
/// in the trailers, and ends a call with `response_status` when a request sets it.
/// `UnimplementedCall` is deliberately not registered.
public struct InteropTestService: RPCService {
    static let serviceName = "grpc.testing.TestService"

    /// Creates the service.
    public init() {}

    public func register(into router: inout RPCRouter) {
        router.registerInlineUnary(
            service: Self.serviceName, method: "EmptyCall",
            request: Grpc_Testing_Empty.self, response: Grpc_Testing_Empty.self
        ) { _, context in
            Self.echoMetadata(context)
            return Grpc_Testing_Empty()
        }
        router.registerInlineUnary(
            service: Self.serviceName, method: "UnaryCall",
            request: Grpc_Testing_SimpleRequest.self, response: Grpc_Testing_SimpleResponse.self
        ) { request, context in
            Self.echoMetadata(context)
            if request.hasResponseStatus { try Self.check(request.responseStatus) }
            return try .with { $0.payload = try Self.payload(size: request.responseSize) }
        }
        router.registerInlineUnary(
            service: Self.serviceName, method: "CacheableUnaryCall",
            request: Grpc_Testing_SimpleRequest.self, response: Grpc_Testing_SimpleResponse.self
        ) { request, context in
            Self.echoMetadata(context)
            return try .with { $0.payload = try Self.payload(size: request.responseSize) }
        }
        router.registerServerStreaming(
            service: Self.serviceName, method: "StreamingOutputCall",
            request: Grpc_Testing_StreamingOutputCallRequest.self,
            response: Grpc_Testing_StreamingOutputCallResponse.self
        ) { request, writer, context in
            Self.echoMetadata(context)
            try await Self.respond(to: request, writer: writer)
        }
        router.registerClientStreaming(
            service: Self.serviceName, method: "StreamingInputCall",
            request: Grpc_Testing_StreamingInputCallRequest.self,
            response: Grpc_Testing_StreamingInputCallResponse.self
        ) { requests, context in
            Self.echoMetadata(context)
            var total: Int32 = 0
            for try await request in requests { total &+= Int32(request.payload.body.count) }
            return .with { $0.aggregatedPayloadSize = total }
        }
        router.registerBidirectionalStreaming(
            service: Self.serviceName, method: "FullDuplexCall",
            request: Grpc_Testing_StreamingOutputCallRequest.self,
            response: Grpc_Testing_StreamingOutputCallResponse.self
        ) { requests, writer, context in
            Self.echoMetadata(context)
            for try await request in requests {
                try await Self.respond(to: request, writer: writer)
            }
        }
        router.registerBidirectionalStreaming(
            service: Self.serviceName, method: "HalfDuplexCall",
            request: Grpc_Testing_StreamingOutputCallRequest.self,
            response: Grpc_Testing_StreamingOutputCallResponse.self
        ) { requests, writer, context in
            Self.echoMetadata(context)
            var buffered: [Grpc_Testing_StreamingOutputCallRequest] = []
            for try await request in requests { buffered.append(request) }
            for request in buffered { try await Self.respond(to: request, writer: writer) }
        }
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

    private static func payload(size: Int32) throws(RPCError) -> Grpc_Testing_Payload {
        guard size >= 0 else { throw RPCError(.invalidArgument, "response size \(size) is negative") }
        return .with {
            $0.type = .compressable
            $0.body = Data(count: Int(size))
        }
    }
}
