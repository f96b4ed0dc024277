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

    /// An inline handler that answers later frees the loop: while its call waits (its
    /// responder held elsewhere), calls on another connection of the same single loop are
    /// answered; the responder then answers from another thread, with a response or an error,
    /// and a responder called before the handler returns answers too.
    @Test func anInlineHandlerAnsweringLaterHoldsNoLoop() async throws {
        let (held, holding) = AsyncStream.makeStream(of: UnaryResponder<Grpc_Testing_SimpleResponse>.self)
        var router = RPCRouter()
        router.registerInlineUnary(Self.echo, answering: { request, _, respond in
            switch request.responseSize {
            case 1:
                holding.yield(respond)
                return .later
            case 2:
                respond(.success(.with { $0.username = "answered before returning" }))
                return .later
            case 3:
                return .declined
            default:
                return .now(.with { $0.username = "now" })
            }
        }, deferred: { _, _ in .with { $0.username = "task" } })
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
        async let waiting = Self.offThePool { () throws -> [String] in
            let client = try RPCClient(address: address)
            var answers = [try client.unary(Self.echo, .with { $0.responseSize = 1 }).username]
            do {
                _ = try client.unary(Self.echo, .with { $0.responseSize = 1 })
                answers.append("no error")
            } catch let error as RPCError {
                answers.append("\(error.status.code) \(error.status.message)")
            }
            return answers
        }
        var responders = held.makeAsyncIterator()
        let first = try #require(await responders.next())
        let others = try await Self.offThePool { () throws -> [String] in
            let client = try RPCClient(address: address)
            return try [0, 2, 3, 0].map { size in try client.unary(Self.echo, .with { $0.responseSize = size }).username }
        }
        #expect(others == ["now", "answered before returning", "task", "now"])
        Thread { first(.success(.with { $0.username = "later" })) }.start()
        let second = try #require(await responders.next())
        Thread { second(.failure(RPCError(.unavailable, "the worker went away"))) }.start()
        #expect(try await waiting == ["later", "\(StatusCode.unavailable) the worker went away"])
    }
}
