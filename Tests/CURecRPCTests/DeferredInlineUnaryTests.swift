import CURecRPCProtos
import Foundation
import Logging
import Synchronization
import Testing
@testable import CURecRPC

/// An inline unary handler that declines (returns nil) hands the call to its deferred handler,
/// which runs as a task and answers it; one that answers is never deferred; an error thrown
/// inline ends the call with its status.
@Suite struct DeferredInlineUnaryTests {
    static let echo = RPCMethod<Grpc_Testing_SimpleRequest, Grpc_Testing_SimpleResponse>(
        service: "curec.test.Deferring", name: "Echo", kind: .unary)

    /// Runs the blocking client off the cooperative pool, which the deferred handlers need.
    static func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    @Test func aDecliningInlineHandlerIsAnsweredByItsTask() async throws {
        let deferredCalls = Mutex(0)
        var router = RPCRouter()
        router.registerInlineUnary(Self.echo, handler: { request, _ in
            if request.responseSize < 0 { throw RPCError(.invalidArgument, "negative size") }
            return request.fillUsername ? nil : Grpc_Testing_SimpleResponse.with { $0.username = "inline" }
        }, deferred: { request, _ in
            deferredCalls.withLock { $0 += 1 }
            await Task.yield()
            return Grpc_Testing_SimpleResponse.with { $0.username = "task \(request.responseSize)" }
        })
        var configuration = RPCServerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.eventLoopCount = 1
        let server = try RPCServer(configuration: configuration, router: router, logger: Logger(label: "test"))
        let port = try server.start()
        defer {
            server.beginGracefulShutdown()
            server.waitUntilStopped()
        }
        let address = "127.0.0.1:\(port)"
        // The deferred handlers run on the cooperative pool, which other suites' long synchronous
        // tests can hold for tens of seconds: the calls get an hour, so they end by their answers.
        let deadline: Double = 3600
        let answers = try await Self.offThePool { () throws -> [String] in
            let client = try RPCClient(address: address)
            var answers = [try client.unary(Self.echo, .with { $0.fillUsername = false }, timeout: deadline).username]
            for size: Int32 in [1, 2, 3] {
                answers.append(try client.unary(
                    Self.echo, .with { $0.fillUsername = true; $0.responseSize = size }, timeout: deadline).username)
            }
            do {
                _ = try client.unary(Self.echo, .with { $0.responseSize = -1 }, timeout: deadline)
                answers.append("no error")
            } catch let error as RPCError {
                answers.append("\(error.status.code)")
            }
            answers.append(try client.unary(Self.echo, .with { $0.fillUsername = false }, timeout: deadline).username)
            return answers
        }
        #expect(answers == ["inline", "task 1", "task 2", "task 3", "\(StatusCode.invalidArgument)", "inline"])
        #expect(deferredCalls.withLock { $0 } == 3)
    }
}
