import Testing
@testable import CURecRPC

/// What a handler's error ends its call with.
@Suite struct StatusConversionTests {
    struct Domain: RPCStatusConvertible {
        var rpcError: RPCError { RPCError(.resourceExhausted, "the queue is full") }
    }

    struct Foreign: Error, CustomStringConvertible {
        var description: String { "disk on fire" }
    }

    @Test func convertsEveryKindOfError() {
        let explicit = RPCError(.notFound, "no such thing")
        #expect(RPCError(converting: explicit).status == explicit.status)
        #expect(RPCError(converting: Domain()).status == RPCStatus(code: .resourceExhausted, message: "the queue is full"))
        #expect(RPCError(converting: CancellationError()).status.code == .cancelled)
        #expect(RPCError(converting: Foreign()).status == RPCStatus(code: .unknown, message: "disk on fire"))
        #expect(HTTP2Connection.status(for: Domain()).0.code == .resourceExhausted)
    }

    @Test func descriptorsCheckTheKindTheyAreRegisteredAs() {
        let method = Grpc_Health_V1_Health.Method.watch
        #expect(method.descriptor.kind == .serverStreaming)
        #expect(method.path == "/grpc.health.v1.Health/Watch")
        #expect(method.descriptor.requestType == "grpc.health.v1.HealthCheckRequest")
        var router = RPCRouter()
        router.registerServerStreaming(method) { _, _, _ in }
        #expect(router.isRouted(method.descriptor))
        #expect(!router.isRouted(Grpc_Health_V1_Health.Method.check.descriptor))
    }
}
