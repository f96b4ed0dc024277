import CURecRPCProtos
import Foundation
import Logging
import Synchronization
import Testing
@testable import CURecRPC

/// Suspends callers until it is opened, whatever happens to their task: a handler that
/// ignores cancellation, as slow work between two cancellation checks does.
private final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let openAlready = state.withLock { state in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if openAlready { continuation.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }
}

/// Blocks a thread until `countDown` has been called a given number of times.
private final class Countdown: Sendable {
    private let remaining: Mutex<Int>
    private let condition = NSCondition()

    init(_ count: Int) { remaining = Mutex(count) }

    func countDown() {
        condition.lock()
        remaining.withLock { $0 -= 1 }
        condition.broadcast()
        condition.unlock()
    }

    func wait() {
        condition.lock()
        while remaining.withLock({ $0 }) > 0 { condition.wait() }
        condition.unlock()
    }
}

/// The client leaving a call once it has seen the handler run.
private struct Leave: Error {}

@Suite struct ResetStreamConcurrencyTests {
    static let hold = RPCMethod<Grpc_Testing_StreamingOutputCallRequest, Grpc_Testing_StreamingOutputCallResponse>(
        service: "curec.test.Holding", name: "Hold", kind: .serverStreaming)
    static let echo = RPCMethod<Grpc_Testing_SimpleRequest, Grpc_Testing_SimpleResponse>(
        service: "curec.test.Holding", name: "Echo", kind: .unary)

    /// A client that opens streams up to the connection's limit and resets each once its
    /// handler runs cannot open more while those handlers still run: the reset streams keep
    /// their slots (RESOURCE_EXHAUSTED) until the handlers return, then calls are served again.
    /// Another connection is not affected.
    @Test func aResetStreamHoldsItsSlotUntilItsHandlerReturns() throws {
        let limit = 2
        let gate = Gate()
        var router = RPCRouter()
        let returnedHandlers = Countdown(limit)
        router.registerServerStreaming(Self.hold) { _, writer, _ in
            // The send may already see the client's reset; the handler holds its slot either
            // way, as slow work that has not yet checked for cancellation does.
            try? await writer.send(Grpc_Testing_StreamingOutputCallResponse())
            await gate.wait()
            returnedHandlers.countDown()
        }
        // Inline: answered on the I/O loop, whatever the handler tasks are doing.
        router.registerInlineUnary(Self.echo) { request, _ in
            Grpc_Testing_SimpleResponse.with { $0.username = request.fillUsername ? "served" : "" }
        }
        var configuration = RPCServerConfiguration()
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.eventLoopCount = 1
        configuration.maxConcurrentStreams = UInt32(limit)
        let server = try RPCServer(configuration: configuration, router: router, logger: Logger(label: "test"))
        let port = try server.start()
        defer {
            gate.open()
            server.beginGracefulShutdown()
            server.waitUntilStopped()
        }
        let address = "127.0.0.1:\(port)"
        let echoRequest = Grpc_Testing_SimpleRequest.with { $0.fillUsername = true }

        try {
            let client = try RPCClient(address: address)
            for _ in 0..<limit {
                // The client resets the stream and reports the call as CANCELLED.
                // A deadline far beyond any scheduling delay on a busy machine: the call must end
                // because the client left, not because its time ran out.
                let error = #expect(throws: RPCError.self) {
                    try client.serverStreaming(Self.hold, Grpc_Testing_StreamingOutputCallRequest(), timeout: 3600) { _ in
                        throw Leave()
                    }
                }
                #expect(error?.status.code == .cancelled)
            }
            // Both streams are reset and closed on the wire; their handlers still run.
            do {
                _ = try client.unary(Self.echo, echoRequest)
                Issue.record("a call beyond the limit was admitted while reset calls' handlers ran")
            } catch let error as RPCError {
                #expect(error.status.code == .resourceExhausted)
                #expect(error.status.message.contains("cancelled calls still finishing"))
            }
            // The limit is per connection.
            let other = try RPCClient(address: address)
            #expect(try other.unary(Self.echo, echoRequest).username == "served")

            // Once the handlers return, the connection's loop frees their slots; a call sent
            // before the loop has seen the return is still refused, so the client retries.
            gate.open()
            returnedHandlers.wait()
            while true {
                do {
                    let response = try client.unary(Self.echo, echoRequest)
                    #expect(response.username == "served")
                    break
                } catch let error as RPCError where error.status.code == .resourceExhausted {
                    continue
                }
            }
        }()
    }
}
