import CURecRPCProtos
import Testing
@testable import CURecRPC

@Suite struct InteropTestServiceTests {
    static func context() -> ServerContext {
        ServerContext(path: "/grpc.testing.TestService/UnaryCall", requestMetadata: Metadata(), deadline: nil,
                      channel: CallChannel(wakeLoop: {}))
    }

    @Test func sendsThePayloadSizeAskedFor() throws {
        let response = try InteropTestService().unaryCall(.with { $0.responseSize = 314_159 }, context: Self.context())
        #expect(response.payload.body.count == 314_159)
    }

    /// Found by the request fuzzer: a response size near Int32.max made every call allocate
    /// and serialize up to 2 GiB.
    @Test func refusesPayloadsOverTheMessageLimit() {
        let service = InteropTestService()
        for size: Int32 in [InteropTestService.maxPayloadBytes + 1, .max] {
            #expect(throws: RPCError.self) {
                _ = try service.unaryCall(.with { $0.responseSize = size }, context: Self.context())
            }
            #expect(throws: RPCError.self) {
                _ = try service.cacheableUnaryCall(.with { $0.responseSize = size }, context: Self.context())
            }
        }
        do {
            _ = try service.unaryCall(.with { $0.responseSize = .max }, context: Self.context())
        } catch let error as RPCError {
            #expect(error.status.code == .invalidArgument)
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
