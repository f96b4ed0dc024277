import CURecRPCProtos
import Testing
@testable import CURecRPC

@Suite struct HealthServiceTests {
    @Test func tracksStatusPerService() {
        let health = HealthService()
        #expect(health.status(of: "") == .serving)
        #expect(health.status(of: "x.Y") == nil)
        health.setStatus(.notServing, for: "x.Y")
        #expect(health.status(of: "x.Y") == .notServing)
        health.markAllNotServing()
        #expect(health.status(of: "") == .notServing)
    }

    @Test func registersCheckAndWatch() {
        var router = RPCRouter()
        router.register(HealthService())
        #expect(router.methods == Grpc_Health_V1_Health.methods)
        #expect(router.methods.map(\.path) == ["/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"])
        #expect(router.serviceNames == ["grpc.health.v1.Health"])
    }
}
